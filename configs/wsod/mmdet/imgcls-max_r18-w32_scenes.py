# The scenes' image-level classifier of imgcls_r18-w32_scenes.py with max pooling
# of the class maps instead of global average pooling of the features: the
# linear layer scores every stride-8 location and the image takes the highest
# score per class, so a garment covering a few cells of a mostly-background map
# is not averaged away (docs/models/casd.md). Backbone pretraining for OICR.
# Train: python tools/train.py configs/wsod/mmdet/imgcls-max_r18-w32_scenes.py
_base_ = ['./imgcls_r18-w32_scenes.py']

model = dict(pool='max')
