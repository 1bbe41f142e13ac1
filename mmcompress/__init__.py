"""mmcompress: distillation, quantization and calibration for OpenMMLab models.

Importing the package (``custom_imports = dict(imports=['mmcompress'])``) applies the
stack compatibility fixes once and registers every component; see ``registry.py``
for how the names reach the ``mmdet``/``mmseg``/``mmpretrain``/``mmpose`` scopes.
"""

from .utils.compat import (
    install_cpu_amp_fix,
    install_cpu_distributed_fix,
    install_torchvision_fix,
)

install_torchvision_fix()
install_cpu_distributed_fix()
install_cpu_amp_fix()

from .utils.checkpoint import install_checkpoint_policy  # noqa: E402

install_checkpoint_policy()

from .utils.runner import install_runner_integration  # noqa: E402

install_runner_integration()

from .utils.compile_compat import install_compile_fix  # noqa: E402

install_compile_fix()

from . import (  # noqa: E402,F401
    adapt,
    calibrate,
    datasets,
    decompose,
    distill,
    incremental,
    models,
    nas,
    quant,
    registry,  # noqa: E402,F401
)

__version__ = '0.1.0'
