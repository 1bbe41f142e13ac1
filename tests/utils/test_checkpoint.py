"""Checkpoint loading: weights and run files load safely; code-running pickles don't."""

import os
import os.path as osp
import pickle
import re

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint

import mmcompress  # noqa: F401  (installs the policy)
from mmcompress.utils import checkpoint as policy
from mmcompress.utils.checkpoint import hub_cache_path
from mmcompress.utils.safe_load import (
    CorruptCheckpointError,
    UntrustedCheckpointError,
    safe_torch_load,
    trusted_checkpoints,
)
from tests.e2e.runs import free_port


class _Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _malicious_checkpoint(tmp_path):
    marker = str(tmp_path / 'pwned.txt')
    path = str(tmp_path / 'evil.pth')
    model = torch.nn.Linear(2, 2)
    torch.save({'state_dict': model.state_dict(), 'meta': _Payload(marker)}, path)
    return path, marker


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    path, marker = _malicious_checkpoint(tmp_path)
    with pytest.raises(UntrustedCheckpointError) as err:
        load_checkpoint(torch.nn.Linear(2, 2), path)
    assert not osp.exists(marker)
    message = str(err.value)
    assert '`builtins.exec`' in message and 'trusted_checkpoints' in message
    assert path in message


def test_explicit_trust_opts_in(tmp_path):
    path, marker = _malicious_checkpoint(tmp_path)
    with trusted_checkpoints([path]):
        ckpt = _load_checkpoint(path)
    assert osp.exists(marker)  # the user asked for it
    assert set(ckpt) == {'state_dict', 'meta'}
    os.remove(marker)
    with trusted_checkpoints([str(tmp_path / 'other.pth')]):
        with pytest.raises(UntrustedCheckpointError):
            _load_checkpoint(path)
    assert not osp.exists(marker)


def test_model_zoo_style_file_loads(tmp_path):
    import numpy as np

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    path = str(tmp_path / 'zoo.pth')
    torch.save(
        {
            'state_dict': model.state_dict(),
            'meta': dict(
                epoch=3,
                classes=('a', 'b'),
                mean=np.zeros(3),
                score=np.float64(0.5),
                mmengine_version='0.10.7',
            ),
        },
        path,
    )
    other = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ckpt = load_checkpoint(other, path)
    assert ckpt['meta']['epoch'] == 3
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    'written_as', ['numpy.core', 'numpy._core'], ids=['numpy1-file', 'numpy2-file']
)
def test_numpy_arrays_load_whichever_numpy_saved_them(tmp_path, written_as):
    """numpy 1 pickles arrays and scalars as ``numpy.core.multiarray.*``, numpy
    2 as ``numpy._core.multiarray.*``: a checkpoint written by either (the
    module names rewritten in its pickle) loads, with its values."""
    import zipfile

    import numpy as np

    path = str(tmp_path / 'saved.pth')
    meta = dict(mean=np.arange(3.0), score=np.float64(0.5))
    torch.save({'state_dict': torch.nn.Linear(2, 2).state_dict(), 'meta': meta}, path)
    renamed = str(tmp_path / 'renamed.pth')
    target = f'{written_as}.multiarray\n'.encode()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(renamed, 'w') as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith('data.pkl'):
                # protocol-2 GLOBAL opcodes name the module as a text line
                for name in (b'numpy.core.multiarray\n', b'numpy._core.multiarray\n'):
                    data = data.replace(name, target)
                assert data.count(target) >= 2  # _reconstruct and scalar
            dst.writestr(item, data)
    ckpt = safe_torch_load(renamed)
    assert np.array_equal(ckpt['meta']['mean'], meta['mean'])
    assert ckpt['meta']['score'] == 0.5


def test_url_served_from_hub_cache_offline(tmp_path, monkeypatch):
    # torch.hub.set_dir() (by any earlier import) wins over $TORCH_HOME
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'torch_home' / 'hub'))
    url = 'http://127.0.0.1:9/models/teacher_20231010-abcdef.pth'
    cached = hub_cache_path(url)
    assert cached.startswith(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='torch hub cache'):
        _load_checkpoint(url)
    assert not osp.exists(cached)  # no partial file left behind
    os.makedirs(osp.dirname(cached), exist_ok=True)
    torch.save({'state_dict': {'w': torch.ones(2)}}, cached)
    assert torch.equal(_load_checkpoint(url)['state_dict']['w'], torch.ones(2))


def test_missing_local_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        _load_checkpoint(str(tmp_path / 'nope.pth'))


def test_safe_torch_load_buffer_and_unpickling_error_type(tmp_path):
    path, _ = _malicious_checkpoint(tmp_path)
    with open(path, 'rb') as f:
        with pytest.raises(pickle.UnpicklingError):
            safe_torch_load(f)


class _GetattrPayload:
    """Pickles as ``getattr(HistoryBuffer, '__init__')``: not a statistics method."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer

        return (getattr, (HistoryBuffer, '__init__'))


def test_getattr_is_restricted_to_history_buffer_statistics(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub

    hub = MessageHub.get_instance('mmcompress_test_hub')
    hub.update_scalar('train/loss', 1.5)
    ok = str(tmp_path / 'hub.pth')
    torch.save({'message_hub': hub.state_dict()}, ok)
    loaded = safe_torch_load(ok)['message_hub']
    assert loaded['log_scalars']['train/loss'].current() == 1.5
    assert HistoryBuffer._statistics_methods['min'] is HistoryBuffer.min

    bad = str(tmp_path / 'bad.pth')
    torch.save({'x': _GetattrPayload()}, bad)
    with pytest.raises(UntrustedCheckpointError):
        safe_torch_load(bad)


def test_legacy_format_loads_and_its_malicious_pickle_is_refused(tmp_path):
    """The pre-zip ``torch.save`` format (old model-zoo files) is scanned too."""
    good = str(tmp_path / 'legacy.pth')
    torch.save(
        {'state_dict': {'w': torch.ones(2)}}, good, _use_new_zipfile_serialization=False
    )
    assert torch.equal(_load_checkpoint(good)['state_dict']['w'], torch.ones(2))
    marker = str(tmp_path / 'pwned.txt')
    evil = str(tmp_path / 'legacy_evil.pth')
    torch.save({'meta': _Payload(marker)}, evil, _use_new_zipfile_serialization=False)
    with pytest.raises(UntrustedCheckpointError, match='`builtins.exec`'):
        _load_checkpoint(evil)
    assert not osp.exists(marker)


def test_untrusted_is_decided_by_torch_scan_not_by_error_text(tmp_path, monkeypatch):
    """The diagnosis asks torch which globals are unsafe: a refusal whose text
    does not say so is still untrusted, and a clean scan is not."""
    path, marker = _malicious_checkpoint(tmp_path)
    calls = []
    real = torch.serialization.get_unsafe_globals_in_checkpoint

    def scan(f):
        calls.append(f)
        return real(f)

    monkeypatch.setattr(torch.serialization, 'get_unsafe_globals_in_checkpoint', scan)
    with pytest.raises(UntrustedCheckpointError, match='`builtins.exec`'):
        safe_torch_load(path)
    assert len(calls) == 1 and not osp.exists(marker)
    monkeypatch.setattr(
        torch.serialization, 'get_unsafe_globals_in_checkpoint', lambda f: []
    )
    with pytest.raises(
        CorruptCheckpointError,
        match='needs no disallowed object, yet it cannot be read',
    ):
        safe_torch_load(path)
    assert not osp.exists(marker)


@pytest.mark.parametrize('kind', ['random', 'truncated', 'empty', 'text'])
def test_unreadable_files_are_corrupt_not_untrusted(tmp_path, kind):
    path = tmp_path / f'{kind}.pth'
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': torch.nn.Linear(8, 8).state_dict()}, str(good))
    content = {
        'random': bytes(range(256)) * 8,
        'truncated': good.read_bytes()[: good.stat().st_size // 2],
        'empty': b'',
        'text': b'<html>404 Not Found</html>',
    }[kind]
    path.write_bytes(content)
    expected = {
        'random': 'neither a zip archive nor a legacy torch.save file',
        'truncated': 'failed finding central directory',
        'empty': r'is empty \(0 bytes\)',
        'text': 'neither a zip archive nor a legacy torch.save file',
    }[kind]
    with pytest.raises(CorruptCheckpointError) as err:
        load_checkpoint(torch.nn.Linear(8, 8), str(path))
    if kind == 'empty':  # also when the file is trusted
        with trusted_checkpoints(True), pytest.raises(CorruptCheckpointError):
            load_checkpoint(torch.nn.Linear(8, 8), str(path))
    assert str(path) in str(err.value)
    assert 'trusted_checkpoints' not in str(err.value)
    assert re.search(expected, str(err.value))


def test_other_errors_of_a_readable_file_keep_torch_message(tmp_path, monkeypatch):
    """A well-formed file failing for another reason (e.g. CUDA tensors on a
    CPU machine) is neither corrupt nor untrusted: torch's error, plus the path."""
    path = str(tmp_path / 'ok.pth')
    torch.save({'w': torch.ones(2)}, path)

    def cuda_error(*args, **kwargs):
        raise RuntimeError('Attempting to deserialize object on a CUDA device')

    monkeypatch.setattr(torch, 'load', cuda_error)
    with pytest.raises(RuntimeError, match='CUDA device') as err:
        safe_torch_load(path)
    assert f'(while loading checkpoint {path})' in err.value.__notes__


def _http_run(tmp_path, monkeypatch, rank, world_size, cached_exists):
    """Run the http loader as ``rank`` of ``world_size``; return the events."""
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    url = 'http://127.0.0.1:9/models/w.pth'
    cached = hub_cache_path(url)
    events = []

    def download(src, dst, progress=False):
        events.append('download')
        torch.save({'state_dict': {'w': torch.ones(1)}}, dst)

    if cached_exists:
        os.makedirs(osp.dirname(cached), exist_ok=True)
        torch.save({'state_dict': {'w': torch.ones(1)}}, cached)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', download)
    monkeypatch.setattr(policy, 'get_dist_info', lambda: (rank, world_size))
    monkeypatch.setattr(
        torch.distributed, 'barrier', lambda *a, **k: events.append('barrier')
    )
    real_load = policy.safe_torch_load
    monkeypatch.setattr(
        policy,
        'safe_torch_load',
        lambda *a, **k: events.append('read') or real_load(*a, **k),
    )
    _load_checkpoint(url)
    return events


def test_http_rank0_downloads_then_barrier_then_other_ranks_read(tmp_path, monkeypatch):
    """As mmengine: rank 0 downloads, every rank meets at a barrier, the
    other ranks then read rank 0's file (no download of their own)."""
    assert _http_run(tmp_path / 'r0', monkeypatch, 0, 2, False) == [
        'download',
        'barrier',
        'read',
    ]
    assert _http_run(tmp_path / 'r1', monkeypatch, 1, 2, True) == ['barrier', 'read']
    # another node without a shared disk: the file is missing after the barrier
    assert _http_run(tmp_path / 'r2', monkeypatch, 1, 2, False) == [
        'barrier',
        'download',
        'read',
    ]
    assert _http_run(tmp_path / 'single', monkeypatch, 0, 1, False) == [
        'download',
        'read',
    ]


def test_http_failed_download_on_rank0_still_reaches_the_barrier(tmp_path, monkeypatch):
    """Rank 0 reaches the barrier before raising, so other ranks do not hang."""
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    events = []

    def no_network(*args, **kwargs):
        raise OSError('no network')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    monkeypatch.setattr(policy, 'get_dist_info', lambda: (0, 2))
    monkeypatch.setattr(
        torch.distributed, 'barrier', lambda *a, **k: events.append('barrier')
    )
    with pytest.raises(FileNotFoundError, match='torch hub cache'):
        _load_checkpoint('http://127.0.0.1:9/models/w.pth')
    assert events == ['barrier']


def test_what_importing_mmcompress_patches():
    """The list in docs/installation.md ("What importing mmcompress changes")."""
    import mmengine.infer.infer as mme_infer
    import mmengine.runner.checkpoint as mme_ckpt
    import mmengine.runner.runner as mme_runner
    from mmengine.runner import Runner

    loaders = mme_ckpt.CheckpointLoader._schemes
    assert loaders[''] is policy._load_from_local
    assert loaders['http://'] is policy._load_from_http
    assert loaders['https://'] is policy._load_from_http
    assert mme_ckpt.load_from_http is policy._load_from_http
    for module in (mme_ckpt, mme_runner, mme_infer):
        assert hasattr(module._load_checkpoint_to_model, '__wrapped__')
    assert hasattr(Runner.load_checkpoint, '__wrapped__')
    # torch itself is left alone: its default and its global allowlist
    assert HistoryBuffer not in torch.serialization.get_safe_globals()


def _dist_http_worker(rank, hub_dir, port, log_dir):
    # spawn re-imports this module: mmcompress's policy is installed
    import torch.distributed as dist

    torch.hub.set_dir(hub_dir)

    def download(src, dst, progress=False):
        open(osp.join(log_dir, f'download_rank{rank}'), 'w').close()
        torch.save({'state_dict': {'w': torch.full((1,), 7.0)}}, dst)

    torch.hub.download_url_to_file = download
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2
    )
    try:
        value = _load_checkpoint('http://127.0.0.1:9/models/w.pth')['state_dict']['w']
        torch.save(value, osp.join(log_dir, f'loaded_rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two fresh interpreters importing mmcompress: about a minute
def test_http_download_once_across_two_real_processes(tmp_path):
    """Two gloo processes load one URL: only rank 0 downloads, both read it."""
    import torch.multiprocessing as mp

    port = free_port()
    mp.spawn(
        _dist_http_worker,
        args=(str(tmp_path / 'hub'), port, str(tmp_path)),
        nprocs=2,
        join=True,
    )
    assert sorted(os.listdir(tmp_path)) == [
        'download_rank0',
        'hub',
        'loaded_rank0.pt',
        'loaded_rank1.pt',
    ]
    for rank in (0, 1):
        assert torch.load(str(tmp_path / f'loaded_rank{rank}.pt')).item() == 7.0
