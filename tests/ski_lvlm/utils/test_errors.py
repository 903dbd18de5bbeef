import pytest

from ski_lvlm.config import ConfigError
from ski_lvlm.data.charades import CharadesFormatError
from ski_lvlm.data.feature_cache import BadItemError, StaleCacheError
from ski_lvlm.data.skeleton import SkeletonFormatError
from ski_lvlm.data.video import VideoDecodeError
from ski_lvlm.export import CorruptExportError
from ski_lvlm.utils.errors import SkiLvlmError, UserError, cli_entry


@pytest.mark.parametrize("exc", [UserError("bad value"), ConfigError(["train.lr: must be > 0"]),
                                 SkeletonFormatError("a.skeleton", 3, "expected 25 joints, got 24"),
                                 CharadesFormatError("x.csv", 2, "bad actions field")])
def test_cli_entry_turns_any_toolkit_error_into_exit_2_with_its_message(exc, capsys):
    @cli_entry("ski-lvlm demo-cmd")
    def main(argv):
        raise exc

    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ski-lvlm demo-cmd: error: ") and str(exc) in err


def test_other_exceptions_are_bugs_and_keep_their_traceback():
    @cli_entry("p")
    def main(argv):
        raise KeyError("not an input error")

    with pytest.raises(KeyError):
        main([])


def test_domain_errors_keep_their_builtin_parents():
    # callers that caught ValueError / RuntimeError before the base existed still catch them
    assert issubclass(SkeletonFormatError, ValueError) and issubclass(StaleCacheError, ValueError)
    assert issubclass(VideoDecodeError, RuntimeError) and issubclass(BadItemError, RuntimeError)
    assert issubclass(ConfigError, ValueError)
    for cls in (SkeletonFormatError, StaleCacheError, VideoDecodeError, BadItemError, ConfigError,
                CorruptExportError, UserError):
        assert issubclass(cls, SkiLvlmError)
