# filter-group (group conv + 1x1) plan of tools/decompose.py at --flops-ratio 0.2
# for work_dirs/resnet18-w16_fmnist/epoch_4.pth
# (benchmarks/decompose_fmnist.py --write-plans; FLOPs 28573184 -> 5704512).
plan = {
    'backbone.layer1.0.conv1': {'method': 'group', 'ranks': [16, 1]},
    'backbone.layer1.0.conv2': {'method': 'group', 'ranks': [8, 1]},
    'backbone.layer1.1.conv1': {'method': 'group', 'ranks': [8, 1]},
    'backbone.layer1.1.conv2': {'method': 'group', 'ranks': [4, 2]},
    'backbone.layer2.0.conv2': {'method': 'group', 'ranks': [8, 3]},
    'backbone.layer2.1.conv1': {'method': 'group', 'ranks': [8, 3]},
    'backbone.layer2.1.conv2': {'method': 'group', 'ranks': [8, 3]},
    'backbone.layer3.0.conv2': {'method': 'group', 'ranks': [8, 5]},
    'backbone.layer3.1.conv1': {'method': 'group', 'ranks': [8, 5]},
    'backbone.layer3.1.conv2': {'method': 'group', 'ranks': [8, 5]},
    'backbone.layer4.0.conv1': {'method': 'group', 'ranks': [4, 28]},
    'backbone.layer4.0.conv2': {'method': 'group', 'ranks': [8, 2]},
    'backbone.layer4.1.conv1': {'method': 'group', 'ranks': [8, 1]},
    'backbone.layer4.1.conv2': {'method': 'group', 'ranks': [8, 1]},
}
