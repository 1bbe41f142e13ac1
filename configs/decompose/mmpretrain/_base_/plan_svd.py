# channel SVD plan of tools/decompose.py at --flops-ratio 0.2
# for work_dirs/resnet18-w16_fmnist/epoch_4.pth
# (benchmarks/decompose_fmnist.py --write-plans; FLOPs 28573184 -> 5713024).
plan = {
    'backbone.layer1.0.conv1': {'method': 'svd', 'ranks': [2]},
    'backbone.layer1.0.conv2': {'method': 'svd', 'ranks': [2]},
    'backbone.layer1.1.conv1': {'method': 'svd', 'ranks': [3]},
    'backbone.layer1.1.conv2': {'method': 'svd', 'ranks': [3]},
    'backbone.layer2.0.conv2': {'method': 'svd', 'ranks': [4]},
    'backbone.layer2.1.conv1': {'method': 'svd', 'ranks': [4]},
    'backbone.layer2.1.conv2': {'method': 'svd', 'ranks': [5]},
    'backbone.layer3.0.conv2': {'method': 'svd', 'ranks': [7]},
    'backbone.layer3.1.conv1': {'method': 'svd', 'ranks': [8]},
    'backbone.layer3.1.conv2': {'method': 'svd', 'ranks': [8]},
    'backbone.layer4.0.conv1': {'method': 'svd', 'ranks': [54]},
    'backbone.layer4.0.conv2': {'method': 'svd', 'ranks': [1]},
    'backbone.layer4.1.conv1': {'method': 'svd', 'ranks': [1]},
    'backbone.layer4.1.conv2': {'method': 'svd', 'ranks': [1]},
}
