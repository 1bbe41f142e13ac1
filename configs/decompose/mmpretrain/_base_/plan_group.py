# placeholder
plan = {
    'backbone.layer1.0.conv1': {'method': 'group', 'ranks': [8, 1]},
    'backbone.layer1.0.conv2': {'method': 'group', 'ranks': [8, 1]},
    'backbone.layer1.1.conv1': {'method': 'group', 'ranks': [4, 2]},
    'backbone.layer1.1.conv2': {'method': 'group', 'ranks': [8, 1]},
    'backbone.layer2.0.conv2': {'method': 'group', 'ranks': [8, 3]},
    'backbone.layer2.1.conv1': {'method': 'group', 'ranks': [8, 3]},
    'backbone.layer2.1.conv2': {'method': 'group', 'ranks': [16, 2]},
    'backbone.layer3.0.conv2': {'method': 'group', 'ranks': [8, 5]},
    'backbone.layer3.1.conv1': {'method': 'group', 'ranks': [8, 5]},
    'backbone.layer3.1.conv2': {'method': 'group', 'ranks': [8, 5]},
    'backbone.layer4.0.conv1': {'method': 'group', 'ranks': [4, 29]},
    'backbone.layer4.0.conv2': {'method': 'group', 'ranks': [8, 2]},
    'backbone.layer4.1.conv1': {'method': 'group', 'ranks': [8, 2]},
    'backbone.layer4.1.conv2': {'method': 'group', 'ranks': [8, 2]},
}
