# DAQ W8A8 on Fashion-MNIST: the W4A4 recipe of daq_w4a4_fmnist.py
# (same layers, float start, optimizer settings and hooks) with 8-bit
# quantizers.
_base_ = ['./daq_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='DAQQuantizer', bits=8, role='weight'),
        a=dict(type='DAQQuantizer', bits=8, role='activation'),
    )
)
