# placeholder
plan = {
    'backbone.layer1.0.conv1': {'method': 'tucker2', 'ranks': [12, 2]},
    'backbone.layer1.0.conv2': {'method': 'tucker2', 'ranks': [2, 14]},
    'backbone.layer1.1.conv1': {'method': 'tucker2', 'ranks': [2, 13]},
    'backbone.layer1.1.conv2': {'method': 'tucker2', 'ranks': [2, 14]},
    'backbone.layer2.0.conv1': {'method': 'tucker2', 'ranks': [16, 3]},
    'backbone.layer2.0.conv2': {'method': 'tucker2', 'ranks': [27, 3]},
    'backbone.layer2.1.conv1': {'method': 'tucker2', 'ranks': [3, 27]},
    'backbone.layer2.1.conv2': {'method': 'tucker2', 'ranks': [3, 27]},
    'backbone.layer3.0.conv1': {'method': 'tucker2', 'ranks': [32, 5]},
    'backbone.layer3.0.conv2': {'method': 'tucker2', 'ranks': [6, 54]},
    'backbone.layer3.1.conv1': {'method': 'tucker2', 'ranks': [6, 54]},
    'backbone.layer3.1.conv2': {'method': 'tucker2', 'ranks': [6, 54]},
    'backbone.layer4.0.conv1': {'method': 'tucker2', 'ranks': [64, 8]},
    'backbone.layer4.0.conv2': {'method': 'tucker2', 'ranks': [81, 9]},
    'backbone.layer4.1.conv1': {'method': 'tucker2', 'ranks': [9, 81]},
    'backbone.layer4.1.conv2': {'method': 'tucker2', 'ranks': [9, 81]},
}
