"""Unit tests of the pure parts of module_utils/sops/ (no sops binary needed)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.age import (
    age_recipient_error,
    recipients_of_identities,
    split_recipients,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.config import (
    CreationRule,
    SopsConfig,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.errors import SopsKeysError
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.fileio import (
    TEMP_MARKER,
    atomic_write,
    temp_path_for,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.files import (
    clear_comments,
    parse_sops_file,
    plaintext_leaves,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.ledger import (
    dump_ledger,
    load_ledger,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.runner import (
    SCRATCH_PREFIX,
    SopsCommandError,
    stale_scratch_dirs,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.walk import (
    exposed_recipient_error,
    is_secret_path,
    parse_time,
    plan_file,
    stale_temp_files,
    stale_temp_files_under,
    walk_files,
)

# Real age public keys (made with age-keygen for these tests; the private halves were discarded).
ALICE = "age1kzlnz20m5mujr988qaut8xp3y49ewd7zu25fp79cw0pefpjqtpyqv4t2u4"
BOB = "age14eug59e864ng4v23zpgep5tzgnz2zskh964n4vqgnqamephlrchsc3ey6x"
CAROL = "age1k4yw7t6evcdslrzhjaepgdparnyrr8h5xe2vzakv78h0sx3gz5cq3vhnx6"
AGE_KEYGEN = shutil.which("age-keygen") or "/usr/bin/age-keygen"


def _flip_last(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("q" if last != "q" else "p")


@pytest.mark.parametrize("key", [ALICE, BOB, CAROL, f"  {ALICE}  "])
def test_valid_age_recipients_pass(key):
    assert age_recipient_error(key) is None


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "does not start with 'age1'"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", "does not start with 'age1'"),
        (ALICE.upper(), "does not start with 'age1'"),
        ("age1" + ALICE[4:].upper(), "lower case"),
        (ALICE[:-1], "malformed"),
        (ALICE + "q", "malformed"),
        (ALICE[:10] + "b" + ALICE[11:], "malformed"),  # 'b' is not a bech32 character
        (_flip_last(ALICE), "bad checksum"),
        # The demo identity, split so the private-key guard does not flag this file.
        (
            "AGE-SECRET-" + "KEY-1KMVN8WV0QN7TG77PE0S7PJAQ6JMFUNZRK993M2L406464PGP42WS2PZFWE",
            "PRIVATE",
        ),
        (42, "must be a string"),
    ],
)
def test_malformed_age_recipients_are_named(key, fragment):
    error = age_recipient_error(key)
    assert error is not None
    assert fragment in error


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, []),
        (ALICE, [ALICE]),
        (f"{ALICE}, {BOB}", [ALICE, BOB]),
        (f"{ALICE},\n{BOB},", [ALICE, BOB]),
        ([ALICE, BOB], [ALICE, BOB]),
        ([f"{ALICE},{BOB}", CAROL], [ALICE, BOB, CAROL]),
    ],
)
def test_split_recipients(value, expected):
    assert split_recipients(value) == expected


def test_split_recipients_rejects_mapping():
    with pytest.raises(SopsKeysError, match="string or a list"):
        split_recipients({"a": 1})


CONFIG = f"""---
# top comment
creation_rules:
  # local comment
  - path_regex: ^inventories/local/.*\\.sops\\.ya?ml$
    age:
      - {ALICE}  # alice
      - {BOB}  # bob
  - path_regex: ^inventories/staging/.*\\.sops\\.ya?ml$
    age: {ALICE},{BOB}
  - path_regex: ^operations/secrets/.*
    encrypted_regex: ^secret_
    age:
      - {ALICE}  # alice only
"""


def _config(tmp_path: Path, text: str = CONFIG) -> SopsConfig:
    path = tmp_path / ".sops.yaml"
    path.write_text(text)
    return SopsConfig.load(path)


@pytest.mark.parametrize(
    ("relpath", "index"),
    [
        ("inventories/local/group_vars/all/x.sops.yml", 0),
        ("inventories/local/group_vars/all/x.sops.yaml", 0),
        ("inventories/staging/group_vars/all/x.sops.yml", 1),
        ("operations/secrets/server.pem", 2),
        ("inventories/local/group_vars/all/main.yml", None),
        ("inventories/production/group_vars/all/x.sops.yml", None),
        ("x/inventories/local/a.sops.yml", None),
    ],
)
def test_rule_for_uses_first_matching_rule(tmp_path, relpath, index):
    rule = _config(tmp_path).rule_for(relpath)
    assert (rule.index if rule else None) == index


def test_add_recipient_keeps_comments_and_styles(tmp_path):
    config = _config(tmp_path)
    changed = config.add_recipient(CAROL, config.select_rules(["inventories/"]))
    assert len(changed) == 2
    text = config.dump()
    assert "# top comment" in text
    assert "# local comment" in text
    assert f"- {ALICE}  # alice\n" in text
    assert f"age: {ALICE},{BOB},{CAROL}\n" in text  # the string form stays a string
    reloaded = SopsConfig(tmp_path / "x", text)
    assert reloaded.rules[0].recipients == [ALICE, BOB, CAROL]
    assert reloaded.rules[2].recipients == [ALICE]  # not selected
    assert "encrypted_regex: ^secret_" in text


def test_add_existing_recipient_changes_nothing(tmp_path):
    config = _config(tmp_path)
    assert config.add_recipient(ALICE, config.rules) == []
    assert config.dump() == CONFIG


def test_remove_recipient_from_every_rule(tmp_path):
    config = _config(tmp_path)
    changed = config.remove_recipient(BOB)
    assert len(changed) == 2
    text = config.dump()
    assert BOB not in text
    assert f"- {ALICE}  # alice\n" in text
    assert "# top comment" in text


def test_remove_unknown_recipient_is_an_error(tmp_path):
    config = _config(tmp_path)
    with pytest.raises(SopsKeysError, match=r"is not in .*nothing to remove"):
        config.remove_recipient(CAROL)


def test_remove_last_recipient_of_a_rule_is_an_error(tmp_path):
    config = _config(tmp_path)
    with pytest.raises(SopsKeysError, match="without any recipient"):
        config.remove_recipient(ALICE)


def test_unknown_rule_selector_is_an_error(tmp_path):
    config = _config(tmp_path)
    with pytest.raises(SopsKeysError, match="matches no creation rule"):
        config.select_rules(["inventories/prod"])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("---\nfoo: 1\n", "no creation_rules"),
        ("---\ncreation_rules: []\n", "no creation_rules"),
        ("---\ncreation_rules:\n  - path_regex: '('\n    age: x\n", "is invalid"),
        ("---\ncreation_rules: [\n", "not valid YAML"),
    ],
)
def test_bad_config_is_reported(tmp_path, text, fragment):
    with pytest.raises(SopsKeysError, match=fragment):
        _config(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (f"---\ncreation_rules:\n  - age: {ALICE[:-3]}\n", "malformed"),
        ("---\ncreation_rules:\n  - pgp: ABCDEF\n", "uses pgp"),
        ("---\ncreation_rules:\n  - path_regex: x\n", "no age recipients"),
    ],
)
def test_validate_names_the_rule(tmp_path, text, fragment):
    config = _config(tmp_path, text)
    with pytest.raises(SopsKeysError, match=fragment) as info:
        config.validate()
    assert "creation_rules[0]" in str(info.value)


def test_missing_config_is_reported(tmp_path):
    with pytest.raises(SopsKeysError, match="not found"):
        SopsConfig.load(tmp_path / ".sops.yaml")


NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
RULE = CreationRule(0, "x", [ALICE, BOB])


@pytest.mark.parametrize(
    ("current", "rotate", "max_age", "rotated_days_ago", "add", "remove", "rotates"),
    [
        ([ALICE, BOB], "never", 90, None, [], [], False),
        ([ALICE, BOB], "expired", 90, 10, [], [], False),
        ([ALICE, BOB], "expired", 90, 91, [], [], True),
        ([ALICE, BOB], "expired", 90, None, [], [], True),  # unknown age counts as due
        ([ALICE, BOB], "expired", 0, None, [], [], False),  # 0 disables age-based rotation
        ([ALICE, BOB], "always", 90, 0, [], [], True),
        ([ALICE], "never", 90, 1, [BOB], [], False),
        ([ALICE, BOB, CAROL], "expired", 90, 1, [], [CAROL], True),  # removal forces rotation
        ([ALICE, BOB, CAROL], "never", 90, 1, [], [CAROL], False),
        ([CAROL], "always", 90, 1, [ALICE, BOB], [CAROL], True),
    ],
)
def test_plan_file(current, rotate, max_age, rotated_days_ago, add, remove, rotates):
    rotated_at = None if rotated_days_ago is None else NOW - dt.timedelta(days=rotated_days_ago)
    plan = plan_file("f", RULE, current, rotate, max_age, rotated_at, NOW)
    assert plan.add == add
    assert plan.remove == remove
    assert plan.rotate is rotates
    assert plan.changes is bool(add or remove or rotates)
    assert bool(plan.reasons) is plan.changes


ENCRYPTED_YAML = f"""secret_a: ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:str]
group:
    list:
        - ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:int]
    port_unencrypted: 8080
sops:
    age:
        - recipient: {ALICE}
          enc: |
            -----BEGIN AGE ENCRYPTED FILE-----
            -----END AGE ENCRYPTED FILE-----
    lastmodified: "2026-11-28T12:46:52Z"
    mac: ENC[AES256_GCM,data:zz,iv:yy,tag:xx,type:str]
    unencrypted_suffix: _unencrypted
    version: 3.11.0
"""


def test_parse_encrypted_yaml(tmp_path):
    path = tmp_path / "a.sops.yml"
    path.write_text(ENCRYPTED_YAML)
    meta = parse_sops_file(path)
    assert meta.encrypted
    assert meta.recipients == [ALICE]
    assert meta.other_key_types == []
    assert meta.secret_names == ["secret_a", "group.list[0]", "group.port_unencrypted"]
    assert plaintext_leaves(meta) == []


def test_plaintext_added_to_an_encrypted_file_is_found(tmp_path):
    path = tmp_path / "a.sops.yml"
    path.write_text("leaked_password: hunter2\n" + ENCRYPTED_YAML)
    assert plaintext_leaves(parse_sops_file(path)) == ["leaked_password"]


def test_encrypted_regex_leaves_other_values_in_clear(tmp_path):
    text = ENCRYPTED_YAML.replace("unencrypted_suffix: _unencrypted", "encrypted_regex: ^secret_")
    path = tmp_path / "a.sops.yml"
    path.write_text("public_name: x\nsecret_b: clear!\n" + text)
    assert plaintext_leaves(parse_sops_file(path)) == ["secret_b"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.sops.yml", "secret: plain\n"),
        ("a.sops.yml", ""),
        ("a.sops.yml", "- a list\n"),
        ("a.sops.yml", "a: [unclosed\n"),
        ("a.sops.json", '{"secret": "plain"}'),
        ("a.sops.json", "{not json"),
        ("a.sops", "-----BEGIN " + "PRIVATE KEY-----\n"),
        ("a.sops.yml", "sops:\n  version: 3.11.0\n"),  # metadata without mac: half a file
        ("a.env", "TOKEN=plain\n"),
    ],
)
def test_plaintext_files_are_not_encrypted(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    assert not parse_sops_file(path).encrypted


def test_parse_binary_and_dotenv(tmp_path):
    binary = tmp_path / "k.pem.sops"
    meta_block = {"age": [{"recipient": BOB, "enc": "x"}], "lastmodified": "t", "mac": "ENC[x]"}
    binary.write_text(json.dumps({"data": "ENC[...]", "sops": meta_block}))
    meta = parse_sops_file(binary)
    assert (meta.encrypted, meta.recipients, meta.secret_names) == (True, [BOB], ["(whole file)"])
    dotenv = tmp_path / "a.env"
    dotenv.write_text(
        "TOKEN=ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\n"
        f"sops_age__list_0__map_recipient={ALICE}\n"
        f"sops_age__list_1__map_recipient={CAROL}\n"
        "sops_lastmodified=2026-11-28T12:00:00Z\nsops_mac=ENC[x]\n"
    )
    meta = parse_sops_file(dotenv)
    assert (meta.encrypted, meta.recipients, meta.secret_names) == (True, [ALICE, CAROL], ["TOKEN"])


def test_other_key_types_are_reported(tmp_path):
    path = tmp_path / "a.sops.yml"
    path.write_text(
        ENCRYPTED_YAML.replace("    lastmodified", "    pgp:\n        - fp: AB\n    lastmodified")
    )
    assert parse_sops_file(path).other_key_types == ["pgp"]


def test_walk_files_covers_rules_and_skips_temp_and_excluded(tmp_path):
    config = _config(tmp_path)
    files = {
        "inventories/local/group_vars/all/a.sops.yml": True,
        "inventories/local/group_vars/all/main.yml": False,
        f"inventories/local/group_vars/all/.a.sops.yml{TEMP_MARKER}ab12.yml": False,
        "operations/secrets/server.pem": True,
        ".git/inventories/local/x.sops.yml": False,
    }
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    found = [rel for _, rel, _ in walk_files(tmp_path, config)]
    assert found == sorted(rel for rel, covered in files.items() if covered)


def test_walk_files_named_file_without_rule_is_an_error(tmp_path):
    config = _config(tmp_path)
    path = tmp_path / "inventories/local/plain.yml"
    path.parent.mkdir(parents=True)
    path.write_text("x")
    with pytest.raises(SopsKeysError, match=r"no creation rule .* covers this file"):
        walk_files(tmp_path, config, [path])


@pytest.mark.parametrize("where", ["missing/dir", "../outside"])
def test_walk_files_bad_limits(tmp_path, where):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    config = _config(root)
    with pytest.raises(SopsKeysError, match=r"no such file|outside the repository"):
        walk_files(root, config, [Path(where)])


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_atomic_write_replaces_content_and_keeps_mode(tmp_path, mode):
    path = tmp_path / "f.sops.yml"
    path.write_text("old")
    os.chmod(path, mode)
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o7777 == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.sops.yml"]


def test_temp_path_keeps_extension_and_is_hidden(tmp_path):
    tmp = temp_path_for(tmp_path / "x.sops.yml")
    assert tmp.name.startswith(".x.sops.yml" + TEMP_MARKER)
    assert tmp.suffix == ".yml"
    assert tmp.parent == tmp_path


def test_stale_temp_files(tmp_path):
    stale = tmp_path / f".a.sops.yml{TEMP_MARKER}0000.yml"
    stale.write_text("x")
    (tmp_path / "a.sops.yml").write_text("x")
    assert stale_temp_files(tmp_path) == [stale]


def test_ledger_round_trip(tmp_path):
    path = tmp_path / ".sops-rotation.yml"
    assert load_ledger(path) == {}
    path.write_text(dump_ledger({"b": "2026-01-01T00:00:00Z", "a": "2026-02-01T00:00:00Z"}))
    assert load_ledger(path) == {"a": "2026-02-01T00:00:00Z", "b": "2026-01-01T00:00:00Z"}
    assert path.read_text().startswith("---\n# Written by")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-28T12:00:00Z", NOW),
        ("2026-11-28T12:00:00", NOW),
        ("2026-11-28T13:00:00+01:00", NOW),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_time(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (128, "missing or wrong private key"),
        (51, "MAC mismatch"),
        (100, "does not exist"),
        (77, "unknown error"),
    ],
)
def test_sops_errors_are_readable(code, fragment):
    err = SopsCommandError("decrypt", "a.sops.yml", code, b"[CMD]\t noise\nFailed to get key\n")
    assert fragment in str(err)
    assert "a.sops.yml" in str(err)
    assert "[CMD]" not in str(err)
    assert "Failed to get key" in str(err)


# --- age identities -> public keys (item 10) -----------------------------------------------------


def test_identity_gives_the_public_key_age_keygen_gives(tmp_path):
    keyfile = tmp_path / "key.txt"
    subprocess.run([AGE_KEYGEN, "-o", str(keyfile)], check=True, capture_output=True)
    public = subprocess.run(
        [AGE_KEYGEN, "-y", str(keyfile)], check=True, capture_output=True, text=True
    ).stdout.strip()
    text = keyfile.read_text()
    assert recipients_of_identities(text) == [public]
    assert recipients_of_identities(text.lower()) == [public]  # bech32 is case-insensitive
    assert recipients_of_identities(f"a\n  {text}\n{text}") == [public]  # once only


@pytest.mark.parametrize(
    "text",
    [
        "",
        ALICE,  # a public key is no identity
        "AGE-SECRET-" + "KEY-1QQQ",  # too short
        # 58 bech32 characters with a broken checksum
        "AGE-SECRET-" + "KEY-1" + "Q" * 58,
    ],
)
def test_no_identity_no_public_key(text):
    assert recipients_of_identities(text) == []


def test_exposed_recipient_error():
    config_rules = [
        CreationRule(0, "^inventories/local/", [ALICE]),
        CreationRule(1, "^p/", []),
    ]
    local, prod = config_rules
    exposed = {BOB: ["inventories/local/demo-age-key.txt"], CAROL: ["docs/x.txt"]}
    assert exposed_recipient_error(ALICE, config_rules, exposed, [BOB], [local]) is None
    assert exposed_recipient_error(BOB, [local], exposed, [BOB], [local]) is None
    error = exposed_recipient_error(BOB, config_rules, exposed, [BOB], [local])
    assert error is not None
    assert "demo key may only be a recipient of the demo rules" in error
    assert prod.label in error
    assert local.label not in error
    error = exposed_recipient_error(CAROL, [local], exposed, [BOB], [local])
    assert error is not None
    assert "docs/x.txt" in error


# --- the guard's rule-based checks (item 9) ------------------------------------------------------


def test_rule_settings_and_sops_defaults(tmp_path):
    (tmp_path / ".sops.yaml").write_text(
        "creation_rules:\n"
        f"  - path_regex: ^a/\n    age: {ALICE}\n"
        f"  - path_regex: ^b/\n    encrypted_regex: ^secret_\n    age: {ALICE}\n"
        f"  - path_regex: ^c/\n    mac_only_encrypted: true\n    age: {ALICE}\n"
    )
    a, b, c = SopsConfig.load(tmp_path / ".sops.yaml").rules
    assert a.settings == {}
    assert a.file_settings == {"unencrypted_suffix": "_unencrypted"}
    assert b.file_settings == {"encrypted_regex": "^secret_"}
    assert c.file_settings == {"unencrypted_suffix": "_unencrypted", "mac_only_encrypted": "true"}


def test_a_rule_without_settings_allows_nothing_in_clear(tmp_path):
    path = tmp_path / "a.sops.yml"
    path.write_text(ENCRYPTED_YAML)
    meta = parse_sops_file(path)
    assert plaintext_leaves(meta) == []  # the file's own settings allow the suffix
    assert plaintext_leaves(meta, {}) == ["group.port_unencrypted"]  # a rule that sets none
    assert plaintext_leaves(meta, {"unencrypted_suffix": "_unencrypted"}) == []


def test_a_value_that_only_looks_encrypted_counts_as_clear(tmp_path):
    path = tmp_path / "a.sops.yml"
    path.write_text("secret_b: ENC[hunter2]\n" + ENCRYPTED_YAML)
    assert plaintext_leaves(parse_sops_file(path), {}) == [
        "secret_b",
        "group.port_unencrypted",
    ]


@pytest.mark.parametrize(
    ("fmt", "text", "settings", "clear"),
    [
        ("yaml", "a: 1\n#ENC[AES256_GCM,data:AA==,iv:BB==,tag:CC==,type:comment]\n", {}, 0),
        ("yaml", "# hello\na: 1  # trailing\nb:\n  # nested\n  c: 2\n# end\n", {}, 4),
        ("yaml", 'a: "# not a comment"\n', {}, 0),
        ("yaml", "# keep: me\na: 1\n", {"unencrypted_comment_regex": "^keep:"}, 0),
        ("yaml", "# other\na: 1\n", {"encrypted_comment_regex": "^secret"}, 0),
        ("yaml", "a: 1\na: 2\n", {}, None),  # duplicate keys: not a sops file
        ("dotenv", "# hello\nA=1\n", {}, 1),
        ("ini", "[s]\n; hello\na = 1\n", {}, 1),
        ("json", '{"a": "# no comments in JSON"}', {}, 0),
    ],
)
def test_clear_comments(fmt, text, settings, clear):
    assert clear_comments(text, fmt, settings) == clear


def test_duplicate_keys_are_recorded(tmp_path):
    path = tmp_path / "a.sops.yml"
    path.write_text("secret_a: clear\n" + ENCRYPTED_YAML)  # the later ENC copy would hide it
    assert parse_sops_file(path).duplicate_keys == ["secret_a"]


@pytest.mark.parametrize(
    ("rel", "secret"),
    [
        ("operations/secrets/local/key.pem", True),
        ("operations/secrets/production/anything.txt", True),
        ("inventories/x/group_vars/all/a.sops.yml", True),
        ("elsewhere/b.sops", True),
        ("docs/secrets.md", False),
        (".sops-rotation.yml", False),
        ("operations/secrets/local/.gitkeep", False),
        (f"operations/secrets/local/.k.pem{TEMP_MARKER}ab.pem", False),
    ],
)
def test_is_secret_path(rel, secret):
    assert is_secret_path(rel) is secret


# --- leftovers of killed runs (item 12) ----------------------------------------------------------


def test_stale_scratch_dirs_are_those_of_dead_processes(tmp_path):
    proc = subprocess.Popen(["true"])
    proc.wait()
    gone = tmp_path / f"{SCRATCH_PREFIX}{proc.pid}-abc"
    mine = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-abc"
    other = tmp_path / "tmp1234"
    for path in (gone, mine, other):
        path.mkdir()
    assert stale_scratch_dirs(tmp_path) == [gone]


def test_stale_temp_files_under_the_whole_root(tmp_path):
    rels = [
        f"a/b/.x.sops.yml{TEMP_MARKER}00.yml",
        f"c/.updatekeys{TEMP_MARKER}11.yaml",
        f"..sops.yaml{TEMP_MARKER}22.yaml",
    ]
    for rel in [*rels, "a/b/x.sops.yml", f".git/.y{TEMP_MARKER}33.yml"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in stale_temp_files_under(tmp_path)]
    assert sorted(found) == sorted(rels)
