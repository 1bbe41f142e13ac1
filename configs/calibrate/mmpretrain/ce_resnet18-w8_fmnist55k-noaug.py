# The converged Fashion-MNIST student (student_r18-w8_fmnist55k.py: CE, 55k train
# split, 15 epochs) without data augmentation (no random crop / flip): the
# regime in which a CE network fits its training set and ends over-confident,
# where a calibration loss has something to correct. Trained and cached by
# benchmarks/fmnist_converged.py --models student_noaug; measured by
# benchmarks/calibration.py --converged --methods ce-noaug.
_base_ = ['../../baselines/mmpretrain/student_r18-w8_fmnist55k.py']

train_dataloader = dict(dataset=dict(pipeline=[dict(type='PackInputs')]))
