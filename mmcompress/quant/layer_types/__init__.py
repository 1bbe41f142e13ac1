"""The quantized layer types, one module each, registered in
:mod:`mmcompress.quant.handlers`.

Every module of this folder is imported here (in name order), so adding a
layer type is adding one file: the quantized layer (a
:class:`~mmcompress.quant.layers.QuantLayerMixin` subclass of the float
layer), its export form (an
:class:`~mmcompress.quant.export.ExportLayerMixin` module) and one
:func:`~mmcompress.quant.handlers.register_quant_layer` call. The transform,
the export, the integer-graph rewrite and ``integer_bias`` then handle the
type. :mod:`.conv1d` is the worked example (docs/quant/guide.md, "Adding a
layer type").
"""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f'{__name__}.{_module}')
