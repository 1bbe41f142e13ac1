# Tucker-2 plan of tools/decompose.py at --flops-ratio 0.2
# for work_dirs/resnet18-w16_fmnist/epoch_4.pth
# (same as benchmarks/decompose_fmnist.py --write-plans; FLOPs 28573184 -> 5693608).
plan = {
    'backbone.layer1.0.conv1': {'method': 'tucker2', 'ranks': [13, 2]},
    'backbone.layer1.0.conv2': {'method': 'tucker2', 'ranks': [2, 12]},
    'backbone.layer1.1.conv1': {'method': 'tucker2', 'ranks': [2, 13]},
    'backbone.layer1.1.conv2': {'method': 'tucker2', 'ranks': [13, 2]},
    'backbone.layer2.0.conv1': {'method': 'tucker2', 'ranks': [16, 4]},
    'backbone.layer2.0.conv2': {'method': 'tucker2', 'ranks': [3, 27]},
    'backbone.layer2.1.conv1': {'method': 'tucker2', 'ranks': [3, 27]},
    'backbone.layer2.1.conv2': {'method': 'tucker2', 'ranks': [27, 3]},
    'backbone.layer3.0.conv1': {'method': 'tucker2', 'ranks': [32, 6]},
    'backbone.layer3.0.conv2': {'method': 'tucker2', 'ranks': [54, 6]},
    'backbone.layer3.1.conv1': {'method': 'tucker2', 'ranks': [54, 6]},
    'backbone.layer3.1.conv2': {'method': 'tucker2', 'ranks': [54, 6]},
    'backbone.layer4.0.conv1': {'method': 'tucker2', 'ranks': [64, 8]},
    'backbone.layer4.0.conv2': {'method': 'tucker2', 'ranks': [9, 81]},
    'backbone.layer4.1.conv1': {'method': 'tucker2', 'ranks': [9, 81]},
    'backbone.layer4.1.conv2': {'method': 'tucker2', 'ranks': [81, 9]},
}
