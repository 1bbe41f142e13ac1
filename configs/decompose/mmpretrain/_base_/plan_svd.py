# placeholder
plan = {
    'backbone.layer1.0.conv1': {'method': 'svd', 'ranks': [2]},
    'backbone.layer1.0.conv2': {'method': 'svd', 'ranks': [2]},
    'backbone.layer1.1.conv1': {'method': 'svd', 'ranks': [2]},
    'backbone.layer1.1.conv2': {'method': 'svd', 'ranks': [3]},
    'backbone.layer2.0.conv2': {'method': 'svd', 'ranks': [4]},
    'backbone.layer2.1.conv1': {'method': 'svd', 'ranks': [4]},
    'backbone.layer2.1.conv2': {'method': 'svd', 'ranks': [4]},
    'backbone.layer3.0.conv2': {'method': 'svd', 'ranks': [9]},
    'backbone.layer3.1.conv1': {'method': 'svd', 'ranks': [9]},
    'backbone.layer3.1.conv2': {'method': 'svd', 'ranks': [9]},
    'backbone.layer4.0.conv1': {'method': 'svd', 'ranks': [56]},
    'backbone.layer4.0.conv2': {'method': 'svd', 'ranks': [1]},
    'backbone.layer4.1.conv1': {'method': 'svd', 'ranks': [1]},
    'backbone.layer4.1.conv2': {'method': 'svd', 'ranks': [1]},
}
