# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep every SOPS file's age recipients in line with .sops.yaml and rotate data keys."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sops_recipients
short_description: Bring SOPS files' age recipients in line with .sops.yaml and rotate data keys
version_added: 0.1.0
description:
  - Walks every file under O(root) that a creation rule of C(.sops.yaml) covers and, file by file,
    brings its age recipients in line with the rule (C(sops updatekeys), which keeps the data key)
    and rotates its data key (C(sops rotate)) when asked or when it is older than O(max_age_days).
  - Optionally edits C(.sops.yaml) first, adding (onboarding) or removing (offboarding) one or more
    age recipients. Comments and layout of C(.sops.yaml) are kept (ruamel.yaml round trip).
  - A file that still lists a recipient its rule no longer lists (an offboarding killed after
    C(.sops.yaml) was written) is re-keyed by any run whose O(paths) include it, with a new data key
    unless O(rotate=never); offboarding the same recipient again finishes such a run.
  - Refuses to add a recipient whose private key (C(AGE-SECRET-KEY-...)) is in a file git tracks
    under O(root), except the demo identity O(demo_keyfile) to the rules O(demo_rules).
  - Before anything is written, every file that will change is decrypted once in memory to prove
    that the available age identities can read it; a bad key, a file no rule covers, a plaintext
    file or a missing private key fails the task with nothing touched.
  - Each file is changed through an encrypted temporary copy in the same directory, which is
    verified (recipients as wanted, decrypts to the same content as before), fsynced and renamed
    over the original. A run killed at any moment leaves every file whole; a re-run finishes.
  - Every run (not check mode) first deletes the hidden temporary copies a killed run left anywhere
    under O(root), and the scratch directories of killed runs in the temp directory.
  - The date of each data-key rotation is recorded in O(ledger_file), because sops keeps none.
  - Runs on the controller (use it with C(delegate_to) localhost or a local play) and needs the
    sops binary, the Python libraries C(sopsy), C(ruamel.yaml) and C(PyYAML).
  - Plaintext never appears in results or diffs; results carry paths, public keys and the
    I(names) of secret values only.
author:
  - mmo_voxel operations (@mmo-voxel)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Lists the files and what would change; decrypts (in memory) to check access.
  diff_mode:
    support: partial
    details: >-
      Shows the .sops.yaml change and, per file, recipients and data-key rotation; never values.
  idempotent:
    description: Run twice in a row with the same options, the second run reports no change.
    support: partial
    details: Idempotent unless O(rotate=always), or O(rotate=expired) finds an expired data key.
options:
  root:
    description: Directory that holds C(.sops.yaml); creation rules match paths relative to it.
    type: path
    required: true
  config_file:
    description: The SOPS configuration, relative to O(root) unless absolute.
    type: path
    default: .sops.yaml
  paths:
    description:
      - Limit the run to these files or directories (relative to O(root) unless absolute).
      - A file named here that no creation rule covers is an error.
      - Default is every file under O(root) that a creation rule covers.
    type: list
    elements: path
    default: []
  exclude:
    description: Directory names never walked into.
    type: list
    elements: str
    default: [.git, .venv, .cache, collections, node_modules, .tox]
  add_recipients:
    description:
      - Age public keys (C(age1...)) to add to the rules chosen by O(rules) in C(.sops.yaml).
      - Adding a recipient that is already there changes nothing.
    type: list
    elements: str
    default: []
  remove_recipients:
    description:
      - Age public keys to remove from every rule of C(.sops.yaml).
      - A key that is in no rule and that no file under O(root) is encrypted to is an error (typo
        protection); so is emptying a rule. A key that is in no rule but still in files (an
        interrupted offboarding) is removed from the files within O(paths).
    type: list
    elements: str
    default: []
  rules:
    description:
      - Which creation rules O(add_recipients) goes to; each entry selects the rules whose
        C(path_regex) contains it as a substring (for example C(inventories/staging)).
      - Empty means every rule. An entry that selects no rule is an error.
    type: list
    elements: str
    default: []
  rotate:
    description:
      - V(always) gives every handled file a new data key.
      - V(expired) rotates files whose data key is older than O(max_age_days) or whose rotation
        date is unknown, and files that lose a recipient.
      - V(never) only changes recipients, keeping data keys (C(sops updatekeys) semantics).
    type: str
    choices: [always, expired, never]
    default: expired
  max_age_days:
    description: Maximum data-key age for O(rotate=expired). V(0) disables age-based rotation.
    type: int
    default: 90
  ledger_file:
    description: Where rotation dates are kept, relative to O(root) unless absolute.
    type: path
    default: .sops-rotation.yml
  age_keyfile:
    description:
      - File with the age identities used to decrypt (E(SOPS_AGE_KEY_FILE)).
      - sops 3.10+ also reads the default C(~/.config/sops/age/keys.txt), so this adds to the
        operator's own key rather than replacing it.
    type: path
  age_key:
    description: Age identities given directly (E(SOPS_AGE_KEY)). Never logged.
    type: str
  sops_binary:
    description: Path of the sops binary; found on E(PATH) when not given.
    type: path
  demo_keyfile:
    description:
      - The public demo identity committed on purpose, relative to O(root) unless absolute. Its
        public key may be added to the rules O(demo_rules); any other recipient whose private key is
        in a file git tracks under O(root) is refused everywhere.
      - A missing file means there is no demo key.
    type: path
    default: inventories/local/demo-age-key.txt
  demo_rules:
    description: Rules (selected like O(rules)) the demo identity may be a recipient of.
    type: list
    elements: str
    default: [inventories/local/, operations/secrets/local/]
requirements:
  - sops >= 3.9
  - sopsy
  - ruamel.yaml
  - PyYAML
notes:
  - Only age recipients listed directly under a creation rule are managed; rules or files with
    C(key_groups), PGP or cloud KMS keys are refused with an error.
  - Removing a recipient cannot take back what it could read before; old ciphertext stays in git
    history. RV(secret_names) lists what must be changed at its source.
seealso:
  - module: community.sops.sops_encrypt
"""

EXAMPLES = r"""
- name: Onboard a new hire to staging and the local demo
  mmo_voxel.ops.sops_recipients:
    root: "{{ playbook_dir }}/.."
    add_recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
    rules:
      - inventories/staging
      - inventories/local
    rotate: never

- name: Offboard a leaver, rotating every data key
  mmo_voxel.ops.sops_recipients:
    root: "{{ playbook_dir }}/.."
    remove_recipients:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
    rotate: always
  register: offboard

- name: Rotate data keys older than 90 days under operations/secrets
  mmo_voxel.ops.sops_recipients:
    root: /srv/ops
    paths: [operations/secrets]
    rotate: expired
    max_age_days: 90
"""

RETURN = r"""
config_changed:
  description: Whether C(.sops.yaml) was (or would be) changed.
  returned: always
  type: bool
recipients_added:
  description: Labels of the creation rules that gained a recipient.
  returned: always
  type: list
  elements: str
recipients_removed:
  description: Labels of the creation rules that lost a recipient.
  returned: always
  type: list
  elements: str
files:
  description: Every file a creation rule covers within the run's scope, and what happened to it.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Path relative to O(root).
      type: str
    rule:
      description: The creation rule covering the file.
      type: str
    changed:
      description: Whether the file was (or would be) rewritten.
      type: bool
    added:
      description: Recipients added to the file.
      type: list
      elements: str
    removed:
      description: Recipients removed from the file.
      type: list
      elements: str
    rotated:
      description: Whether the data key was (or would be) rotated.
      type: bool
    reasons:
      description: Why the file changes, in words.
      type: list
      elements: str
  sample:
    - path: inventories/local/group_vars/all/secrets.sops.yml
      rule: creation_rules[0] (path_regex '^inventories/local/.*\.sops\.ya?ml$')
      changed: true
      added: []
      removed: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]
      rotated: true
      reasons: [remove 1 recipient(s), data key rotation requested]
secret_names:
  description:
    - For every file that lost a recipient, the names (key paths) of its values, never the
      values. After offboarding these must be changed at their source, because the old
      ciphertext stays readable to the removed key in git history.
  returned: always
  type: dict
  sample:
    inventories/local/group_vars/all/secrets.sops.yml: [secret_discord_webhook_url]
stale_temp_files_removed:
  description: Temporary copies left under O(root) by an interrupted earlier run, now removed.
  returned: always
  type: list
  elements: str
stale_scratch_removed:
  description:
    - Scratch directories of killed runs (sopsy's configuration copies) in the temp directory, now
      removed.
  returned: always
  type: list
  elements: str
remaining_access:
  description:
    - For each of O(remove_recipients), the files under O(root) whose sops metadata still lists it
      after this run (would, in check mode), whatever O(paths) is. Empty lists mean the recipient
      can decrypt no current file; files outside O(paths) stay listed until a run covers them.
  returned: always
  type: dict
  sample:
    age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p:
      - operations/secrets/staging/server_key.pem.sops
"""

import datetime as dt
import shutil
import traceback
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import (
    format_rfc3339,
    utc_now,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.age import (
    age_recipient_error,
    recipients_of_identities,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.config import (
    HAS_RUAMEL,
    CreationRule,
    SopsConfig,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.errors import SopsKeysError
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.fileio import atomic_write
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.files import (
    FileMetadata,
    parse_sops_file,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.ledger import (
    dump_ledger,
    load_ledger,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.rekey import rekey_file
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.runner import (
    HAS_SOPSY,
    SopsCommandError,
    SopsRunner,
    stale_scratch_dirs,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.walk import (
    DEFAULT_EXCLUDES,
    DEMO_KEYFILE,
    DEMO_RULES,
    FilePlan,
    exposed_recipient_error,
    exposed_recipients,
    parse_time,
    plan_file,
    stale_temp_files,
    stale_temp_files_under,
    uncovered_secret_files,
    walk_files,
)


def argument_spec() -> dict[str, Any]:
    return {
        "root": {"type": "path", "required": True},
        "config_file": {"type": "path", "default": ".sops.yaml"},
        "paths": {"type": "list", "elements": "path", "default": []},
        "exclude": {"type": "list", "elements": "str", "default": list(DEFAULT_EXCLUDES)},
        "add_recipients": {"type": "list", "elements": "str", "default": []},
        "remove_recipients": {"type": "list", "elements": "str", "default": []},
        "rules": {"type": "list", "elements": "str", "default": []},
        "rotate": {"type": "str", "choices": ["always", "expired", "never"], "default": "expired"},
        "max_age_days": {"type": "int", "default": 90},
        "ledger_file": {"type": "path", "default": ".sops-rotation.yml", "no_log": False},
        "age_keyfile": {"type": "path", "no_log": False},
        "age_key": {"type": "str", "no_log": True},
        "sops_binary": {"type": "path"},
        "demo_keyfile": {"type": "path", "default": DEMO_KEYFILE, "no_log": False},
        "demo_rules": {"type": "list", "elements": "str", "default": list(DEMO_RULES)},
    }


class RecipientManager:
    """Plans and applies recipient changes and rotations for one module run."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        params = module.params
        self.root = Path(params["root"])
        if not self.root.is_dir():
            raise SopsKeysError(f"root {self.root} is not a directory")
        self.config_path = self._under_root(params["config_file"])
        self.ledger_path = self._under_root(params["ledger_file"])
        self.add = [key.strip() for key in params["add_recipients"]]
        self.remove = [key.strip() for key in params["remove_recipients"]]
        self.rotate = params["rotate"]
        self.max_age_days = params["max_age_days"]
        if self.max_age_days < 0:
            raise SopsKeysError(f"max_age_days must be 0 or more, got {self.max_age_days}")
        self.result: dict[str, Any] = {
            "changed": False,
            "config_changed": False,
            "recipients_added": [],
            "recipients_removed": [],
            "files": [],
            "secret_names": {},
            "stale_temp_files_removed": [],
            "stale_scratch_removed": [],
            "remaining_access": {},
        }
        self.runner: SopsRunner | None = None

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()

    def _under_root(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.root / path

    def validate_keys(self) -> None:
        for option, keys in (("add_recipients", self.add), ("remove_recipients", self.remove)):
            for key in keys:
                error = age_recipient_error(key)
                if error:
                    raise SopsKeysError(f"{option}: {error}")
        both = sorted(set(self.add) & set(self.remove))
        if both:
            raise SopsKeysError(f"recipient(s) both added and removed: {', '.join(both)}")

    def run(self) -> dict[str, Any]:
        self.validate_keys()
        params = self.module.params
        excludes = params["exclude"]
        config = SopsConfig.load(self.config_path)
        selected = config.select_rules(params["rules"])
        if self.add:
            self._refuse_exposed_keys(config, selected)
        for key in self.add:
            self.result["recipients_added"] += config.add_recipient(key, selected)
        resumed = []
        for key in self.remove:
            if config.holds(key):
                self.result["recipients_removed"] += config.remove_recipient(key)
            else:
                resumed.append(key)  # gone from .sops.yaml already: an interrupted offboarding?
        new_config_text = config.dump() if (self.add or self.remove) else config.original_text
        self.result["config_changed"] = new_config_text != config.original_text

        # Every file where secrets live, whatever `paths` says: which files a removed recipient
        # can still open, and whether a recipient gone from .sops.yaml is still in some file.
        everything = walk_files(self.root, config, None, excludes)
        metadata = {rel: parse_sops_file(path) for path, rel, _ in everything}
        for rel in uncovered_secret_files(self.root, config, excludes):
            metadata[rel] = parse_sops_file(self.root / rel)
        for key in resumed:
            if not any(key in meta.recipients for meta in metadata.values()):
                raise SopsKeysError(
                    f"recipient {key} is not in {config.path} and no file is encrypted to it: "
                    "nothing to remove (check the key; a recipient must be listed in a creation "
                    "rule or a file to be offboarded)"
                )
        if not self.module.check_mode:
            self._remove_leftovers(excludes)

        limit = [self._under_root(p) for p in params["paths"]]
        files = walk_files(self.root, config, limit or None, excludes)
        used = {rule.index: rule for _, _, rule in files}
        used.update({rule.index: rule for rule in selected})
        config.validate(used[index] for index in sorted(used))
        ledger = load_ledger(self.ledger_path)
        now = utc_now().replace(microsecond=0)

        work = self._plan(files, metadata, ledger, now)
        self.result["remaining_access"] = self._remaining_access(metadata, work)
        self.result["changed"] = self.result["config_changed"] or bool(work)
        if self.module._diff:
            self.result["diff"] = self._diff(config, new_config_text, work)
        if not self.module.check_mode:
            self._apply(new_config_text, work, ledger, now)
        return self.result

    def _refuse_exposed_keys(self, config: SopsConfig, selected: list[CreationRule]) -> None:
        """A recipient whose private key is in the repository protects nothing: refuse it."""
        params = self.module.params
        exposed = exposed_recipients(self.root, params["exclude"])
        if not exposed:
            return
        demo_file = self._under_root(params["demo_keyfile"]) if params["demo_keyfile"] else None
        demo = []
        if demo_file is not None and demo_file.is_file():
            demo = recipients_of_identities(demo_file.read_text(encoding="utf-8"))
        demo_rules = config.rules_matching(params["demo_rules"])
        for key in self.add:
            error = exposed_recipient_error(key, selected, exposed, demo, demo_rules)
            if error:
                raise SopsKeysError(f"add_recipients: {error}; nothing was changed")

    def _remove_leftovers(self, excludes: list[str]) -> None:
        """Temp copies of killed runs (ciphertext to old recipients) and their scratch dirs."""
        stale = set(stale_temp_files_under(self.root, excludes))
        for directory in {self.config_path.parent, self.ledger_path.parent}:
            stale.update(stale_temp_files(directory))
        for path in sorted(stale):
            path.unlink(missing_ok=True)
            try:
                shown = path.relative_to(self.root).as_posix()
            except ValueError:
                shown = str(path)
            self.result["stale_temp_files_removed"].append(shown)
        for scratch in stale_scratch_dirs():
            shutil.rmtree(scratch, ignore_errors=True)
            self.result["stale_scratch_removed"].append(str(scratch))

    def _remaining_access(
        self,
        metadata: dict[str, FileMetadata],
        work: list[tuple[Path, FilePlan, list[str], str]],
    ) -> dict[str, list[str]]:
        """Per removed recipient, the files whose metadata lists it once `work` is done."""
        after = {rel: list(meta.recipients) for rel, meta in metadata.items()}
        for _, plan, desired, _digest in work:
            after[plan.path] = list(desired)
        return {
            key: sorted(rel for rel, recipients in after.items() if key in recipients)
            for key in self.remove
        }

    def _plan(
        self,
        files: list[tuple[Path, str, CreationRule]],
        metadata: dict[str, FileMetadata],
        ledger: dict[str, str],
        now: dt.datetime,
    ) -> list[tuple[Path, FilePlan, list[str], str]]:
        """Read-only: what each file needs, and proof that the available keys can read it."""
        work: list[tuple[Path, FilePlan, list[str], str]] = []
        for path, rel, rule in files:
            meta = metadata.get(rel) or parse_sops_file(path)
            if not meta.encrypted:
                raise SopsKeysError(
                    f"{rel}: matches {rule.label} but is not SOPS-encrypted; encrypt it "
                    "(sops encrypt -i) or move it out of the rule's path before re-keying"
                )
            if meta.other_key_types:
                raise SopsKeysError(
                    f"{rel}: also encrypted with {', '.join(meta.other_key_types)}; only age "
                    "recipients are managed here"
                )
            plan = plan_file(
                rel,
                rule,
                meta.recipients,
                self.rotate,
                self.max_age_days,
                parse_time(ledger.get(rel)),
                now,
            )
            self.result["files"].append(
                {
                    "path": rel,
                    "rule": rule.label,
                    "changed": plan.changes,
                    "added": plan.add,
                    "removed": plan.remove,
                    "rotated": plan.rotate,
                    "reasons": plan.reasons,
                }
            )
            if plan.remove:
                self.result["secret_names"][rel] = meta.secret_names
            if plan.changes:
                try:
                    digest = self._runner().decrypt_digest(path)
                except SopsCommandError as exc:
                    raise SopsKeysError(
                        f"{rel}: cannot be decrypted with the available age identities, so it "
                        f"cannot be re-keyed; nothing was changed. {exc}"
                    ) from None
                work.append((path, plan, list(rule.recipients), digest))
        return work

    def _runner(self) -> SopsRunner:
        if self.runner is None:
            params = self.module.params
            self.runner = SopsRunner(
                params["sops_binary"], params["age_keyfile"], params["age_key"]
            )
        return self.runner

    def _apply(
        self,
        new_config_text: str,
        work: list[tuple[Path, FilePlan, list[str], str]],
        ledger: dict[str, str],
        now: dt.datetime,
    ) -> None:
        """Write: .sops.yaml first, so that any re-run finishes an interrupted run."""
        if self.result["config_changed"]:
            atomic_write(self.config_path, new_config_text.encode("utf-8"))
        for path, plan, desired, digest in work:
            rekey_file(self._runner(), path, plan, desired, digest)
            if plan.rotate:
                ledger[plan.path] = format_rfc3339(now, timespec="seconds")
                atomic_write(self.ledger_path, dump_ledger(ledger).encode("utf-8"))

    def _diff(
        self, config: SopsConfig, new_text: str, work: list[tuple[Path, FilePlan, Any, Any]]
    ) -> list[dict[str, str]]:
        """Public keys and rotation flags only; the values of secrets never appear."""
        rel_config = self.config_path.name
        diffs = []
        if new_text != config.original_text:
            diffs.append(
                {
                    "before_header": rel_config,
                    "after_header": rel_config,
                    "before": config.original_text,
                    "after": new_text,
                }
            )
        for _, plan, desired, _digest in work:
            current = [r for r in desired if r not in plan.add] + plan.remove
            diffs.append(
                {
                    "before_header": f"{plan.path} (sops metadata)",
                    "after_header": f"{plan.path} (sops metadata)",
                    "before": "age recipients:\n"
                    + "".join(f"  - {r}\n" for r in sorted(current))
                    + "data key: current\n",
                    "after": "age recipients:\n"
                    + "".join(f"  - {r}\n" for r in sorted(desired))
                    + ("data key: rotated\n" if plan.rotate else "data key: current\n"),
                }
            )
        return diffs


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_SOPSY:
        module.fail_json(msg=missing_required_lib("sopsy"))
    if not HAS_RUAMEL:
        module.fail_json(msg=missing_required_lib("ruamel.yaml"))
    manager: RecipientManager | None = None
    try:
        manager = RecipientManager(module)
        result = manager.run()
    except (SopsKeysError, OSError) as exc:
        # What was already done (paths and public keys only) helps the operator; a re-run
        # finishes the job because .sops.yaml is written first.
        partial = manager.result if manager is not None else {}
        prefix = "file system error: " if isinstance(exc, OSError) else ""
        extra = {"exception": traceback.format_exc()} if isinstance(exc, OSError) else {}
        module.fail_json(msg=f"{prefix}{exc}", **partial, **extra)
    finally:
        if manager is not None:
            manager.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
