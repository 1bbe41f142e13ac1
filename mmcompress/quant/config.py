"""``QuantConfig``: the options of the quantization transform as a dataclass.

Its fields are the keys of ``QuantizedModel``'s ``quant`` dict and the keyword
arguments of :func:`~mmcompress.quant.transform.quantize_model`; the list of
valid keys is the list of fields. See :mod:`mmcompress.quant.transform` for
what each option does.
"""

import copy
import dataclasses
import difflib
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

#: The quantizer slots of a layer: weight, input activation, gradient.
QUANT_SLOTS = ('w', 'a', 'g')
_OUTPUT_QUANTIZER_KEYS = ('modules', 'readers', 'quantizer')


@dataclass
class QuantConfig:
    """What to quantize and how (see :mod:`mmcompress.quant.transform`).

    Args:
        w (dict, optional): Weight quantizer config, e.g.
            ``dict(type='LSQQuantizer', bits=4, per_channel=True)``.
        a (dict, optional): Input-activation quantizer config.
        g (dict, optional): Gradient quantizer config.
        include (Sequence[str]): Patterns of layers to quantize.
            Defaults to ``('*', )``.
        exclude (Sequence[str]): Patterns of layers to keep float.
        keep_first_float (bool): Keep the first Conv2d float. Defaults to
            True.
        keep_output_float (bool): Keep the output layers float. Defaults
            to True.
        output_layers (Sequence[str], optional): Patterns of the output
            layers (default: ``DEFAULT_OUTPUT_LAYERS``).
        layer_overrides (dict, optional): ``{pattern: dict(w=..., a=...,
            g=...)}``.
        output_quantizers (dict, optional): ``dict(modules=[patterns],
            readers=[patterns], quantizer=None)``.
        integer_bias (bool): Add biases on the int32 grids of the integer
            export. Defaults to False.
    """

    w: Optional[dict] = None
    a: Optional[dict] = None
    g: Optional[dict] = None
    include: Sequence[str] = ('*',)
    exclude: Sequence[str] = ()
    keep_first_float: bool = True
    keep_output_float: bool = True
    output_layers: Optional[Sequence[str]] = None
    layer_overrides: Optional[Dict[str, dict]] = None
    output_quantizers: Optional[dict] = None
    integer_bias: bool = False

    @classmethod
    def keys(cls) -> tuple:
        """tuple[str]: The valid option names (the fields)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, options: dict, where: str = 'QuantizedModel') -> 'QuantConfig':
        """Build from a ``quant`` dict, refusing unknown keys.

        Args:
            options (dict): The options.
            where (str): The caller, for the error message.

        Returns:
            QuantConfig: The config.
        """
        if isinstance(options, QuantConfig):
            return options
        if not isinstance(options, dict):
            raise TypeError(
                f'{where}: quant options must be a dict or a '
                f'QuantConfig, got {type(options).__name__}'
            )
        valid = cls.keys()
        unknown = sorted(set(options) - set(valid))
        if unknown:
            hints = {
                k: difflib.get_close_matches(k, valid, n=2, cutoff=0.6) for k in unknown
            }
            hint = '; '.join(f'{k!r}: did you mean {h}?' for k, h in hints.items() if h)
            raise ValueError(
                f'{where}: unknown quant keys {unknown}; valid '
                f'keys: {list(valid)}' + (f' ({hint})' if hint else '')
            )
        return cls(**copy.deepcopy(dict(options)))

    def check(self) -> None:
        """Refuse settings that cannot do anything or are malformed (called
        by :func:`~mmcompress.quant.transform.quantize_` before it touches
        the model)."""
        if self.w is None and self.a is None and self.g is None:
            raise ValueError(
                'quantize_model: give at least one of w '
                '(weights), a (activations) or g (gradients) '
                'quantizer configs'
            )
        self._check_integer_bias()
        self.output_quantizer_config()

    def _check_integer_bias(self) -> None:
        if not isinstance(self.integer_bias, bool):
            raise TypeError(
                f'integer_bias must be True or False, got '
                f'{self.integer_bias!r} '
                f'({type(self.integer_bias).__name__})'
            )
        if not self.integer_bias:
            return
        if self.w is None:
            raise ValueError(
                'integer_bias=True needs a weight quantizer '
                'config w (an int32 bias exists only for integer '
                'weights)'
            )
        if self.a is None and self.output_quantizers is None:
            raise ValueError(
                'integer_bias=True needs integer conv inputs: an '
                'activation quantizer config a or '
                'output_quantizers'
            )

    def output_quantizer_config(self) -> Optional[dict]:
        """``output_quantizers`` checked, with its defaults filled in
        (``readers=()``, ``quantizer``: ``a`` without its ``signed``).

        Returns:
            dict | None: ``dict(modules, readers, quantizer)``.
        """
        options = self.output_quantizers
        if options is None:
            return None
        if (
            not isinstance(options, dict)
            or 'modules' not in options
            or not set(options) <= set(_OUTPUT_QUANTIZER_KEYS)
        ):
            raise ValueError(
                'output_quantizers must be a dict with the key modules '
                '(patterns of the modules whose outputs are quantized) and '
                'optionally readers and quantizer (valid keys: '
                f'{_OUTPUT_QUANTIZER_KEYS}), got {options!r}'
            )
        quantizer = options.get('quantizer')
        if quantizer is None:
            if self.a is None:
                raise ValueError(
                    'output_quantizers: give quantizer=<config> (there is no '
                    'activation quantizer config a to default to)'
                )
            quantizer = {k: v for k, v in self.a.items() if k != 'signed'}
        return dict(
            modules=options['modules'],
            readers=options.get('readers', ()),
            quantizer=quantizer,
        )
