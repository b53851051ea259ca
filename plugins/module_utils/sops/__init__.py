"""SOPS + age recipient management, one concern per module.

Used by the module `mmo_voxel.ops.sops_recipients`, the plaintext guard
`scripts/check-sops-encrypted` and the tests. Nothing in here returns, logs or writes plaintext.
Decryption happens only to prove that a file (old or new) decrypts and that its content did not
change; the decrypted bytes are hashed in memory and dropped.

- `errors`: the error whose message is safe to show.
- `age`: bech32, age recipients and identities (public keys only leave it).
- `config`: `.sops.yaml`, its creation rules and the edits of their recipients.
- `files`: one encrypted file: its sops metadata, and its audit by the plaintext guard.
- `walk`: the repository's files, which rule covers each, exposed keys, leftovers; the plan.
- `ledger`: when each file's data key was last rotated.
- `fileio`: writing files atomically (the repository's `ops_common`) and naming temp copies.
- `runner`: calling sops (sopsy for decrypt and rotate, the binary for the rest).
- `rekey`: applying a plan to one file, safely.

"""
