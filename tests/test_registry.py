"""mmcompress names resolve from every downstream scope, unprefixed and prefixed."""

import importlib
import subprocess
import sys
import textwrap

import pytest

import mmcompress  # noqa: F401
from mmcompress.registry import ALL_REGISTRIES, MODELS, SCOPE

DOWNSTREAM_SCOPES = ('mmpretrain', 'mmdet', 'mmseg', 'mmpose')


def _resolve(registry, scope, name):
    """Look ``name`` up exactly as ``build_from_cfg`` does under ``scope``."""
    with registry.switch_scope_and_registry(scope) as scoped:
        return scoped.get(name)


def _register_downstream(scope):
    importlib.import_module(f'{scope}.registry')
    # register the downstream's own classes, so shadowing would show
    for module in ('models', 'datasets', 'evaluation', 'engine'):
        try:
            importlib.import_module(f'{scope}.{module}')
        except ModuleNotFoundError:
            pass


@pytest.mark.parametrize('scope', DOWNSTREAM_SCOPES)
def test_every_name_resolves_from_downstream_scope(scope):
    _register_downstream(scope)
    checked = 0
    for registry in ALL_REGISTRIES:
        for name, obj in registry.module_dict.items():
            assert _resolve(registry, scope, name) is obj, (
                f'{name} in scope {scope} resolves to another class: a '
                f'downstream name shadows it; rename the mmcompress class'
            )
            assert _resolve(registry, scope, f'{SCOPE}.{name}') is obj
            checked += 1
    assert checked > 0


def test_registry_is_child_of_root_with_own_scope():
    assert MODELS.scope == 'mmcompress'
    assert MODELS.parent.scope == 'mmengine'
    assert MODELS.parent.get('FashionMNISTDataset') is None  # not a model
    from mmcompress.registry import DATASETS

    assert DATASETS.parent.get('FashionMNISTDataset') is DATASETS.get(
        'FashionMNISTDataset'
    )


def test_duplicate_name_fails_loudly():
    from mmcompress.registry import DATASETS

    with pytest.raises(KeyError, match='already registered'):
        DATASETS.register_module(
            name='FashionMNISTDataset', module=type('Other', (), {})
        )


@pytest.fixture
def restore_models():
    """Undo test registrations in the mmcompress MODELS and its root."""
    own, root = dict(MODELS.module_dict), dict(MODELS.parent.module_dict)
    mirrored = set(MODELS._mirrored)
    yield MODELS
    for registry, saved in ((MODELS, own), (MODELS.parent, root)):
        registry.module_dict.clear()
        registry.module_dict.update(saved)
    MODELS._mirrored = mirrored


def test_root_name_clash_warns_and_keeps_both_names(restore_models):
    """A class named like an mmengine root class: the root entry is untouched,
    the mmcompress class is reachable through its scope prefix."""
    from mmengine.model import ImgDataPreprocessor

    assert MODELS.parent.get('ImgDataPreprocessor') is ImgDataPreprocessor
    ours = type('ImgDataPreprocessor', (), {'__module__': 'mmcompress.fake'})
    with pytest.warns(UserWarning) as record:
        MODELS.register_module(module=ours)
    message = str(record[0].message)
    assert 'registered as mmcompress.ImgDataPreprocessor only' in message
    assert (
        "'ImgDataPreprocessor' is already taken in the mmengine root "
        f"'model' registry by {ImgDataPreprocessor.__module__}"
        '.ImgDataPreprocessor'
    ) in message
    assert "Use type='mmcompress.ImgDataPreprocessor' in configs" in message
    # the root (and every downstream scope through it) keeps mmengine's class
    assert MODELS.parent.get('ImgDataPreprocessor') is ImgDataPreprocessor
    for scope in DOWNSTREAM_SCOPES:
        _register_downstream(scope)
        assert _resolve(MODELS, scope, 'ImgDataPreprocessor') is ImgDataPreprocessor
        assert _resolve(MODELS, scope, 'mmcompress.ImgDataPreprocessor') is ours
    # inside the mmcompress scope the unprefixed name is the mmcompress class
    assert _resolve(MODELS, SCOPE, 'ImgDataPreprocessor') is ours
    # force=True does not take another package's root entry either
    again = type('ImgDataPreprocessor', (), {'__module__': 'mmcompress.fake'})
    with pytest.warns(UserWarning, match='already taken in the mmengine root'):
        MODELS.register_module(module=again, force=True)
    assert MODELS.parent.get('ImgDataPreprocessor') is ImgDataPreprocessor
    assert MODELS.get('ImgDataPreprocessor') is again


def test_force_replaces_only_the_own_mirror(restore_models):
    first = type('McTmpLoss', (), {})
    MODELS.register_module(module=first)
    assert MODELS.parent.get('McTmpLoss') is first
    second = type('McTmpLoss', (), {})
    MODELS.register_module(module=second, force=True)
    assert MODELS.parent.get('McTmpLoss') is second
    assert MODELS.get('McTmpLoss') is second


def test_later_root_registration_names_the_mmcompress_class():
    from mmcompress.distill import DistillModel

    assert MODELS.parent.get('DistillModel') is DistillModel
    with pytest.raises(
        KeyError,
        match=r'DistillModel is already registered '
        r'in model at mmcompress\.distill',
    ):
        MODELS.parent.register_module(name='DistillModel', module=type('Other', (), {}))
    assert MODELS.parent.get('DistillModel') is DistillModel


@pytest.mark.parametrize('scope', DOWNSTREAM_SCOPES)
def test_custom_imports_from_a_config_file(tmp_path, scope):
    """A fresh interpreter: only the config's custom_imports imports mmcompress."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        textwrap.dedent(f"""
        default_scope = '{scope}'
        custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)
        dataset = dict(type='FashionMNISTDataset', split='test', subset_size=20)
        prefixed = dict(type='mmcompress.FashionMNISTDataset', split='test',
                        subset_size=10)
    """)
    )
    code = textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        from mmengine.registry import DATASETS, init_default_scope
        assert 'mmcompress' not in sys.modules
        cfg = Config.fromfile({str(cfg)!r})
        init_default_scope(cfg.default_scope)
        a = DATASETS.build(cfg.dataset)
        b = DATASETS.build(cfg.prefixed)
        print(type(a).__module__, len(a), len(b))
    """)
    out = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-3:] == ['mmcompress.datasets.fashion_mnist', '20', '10']
