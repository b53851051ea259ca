"""mitogen's mitogen_linear strategy, with CPU placement left to the kernel on small machines.

scripts/drift-check runs the check with this strategy (ANSIBLE_STRATEGY_PLUGINS points at this
folder, ANSIBLE_STRATEGY=mitogen_linear): mitogen's own class, unchanged, loaded the way
mitogen's plugins/strategy/mitogen_linear.py loads it.

Why: mitogen pins its processes to CPUs (ansible_mitogen/affinity.py). On fewer than 4 CPUs it
keeps CPU 0 for its multiplexer and puts the strategy, every task's worker and every
connection's child (docker exec, ssh) on the rest: on 2 CPUs all of them on one. Measured on the
2-CPU build VM, the same 10-host tuned drift check took 75-87 s pinned and 54-63 s with the
placement left to the kernel (bench/README.md, "CPU placement"). From 4 CPUs on, mitogen gives
the strategy and the workers their own CPUs and its placement is kept.
"""

from __future__ import annotations

import os

import ansible_mitogen.affinity
import ansible_mitogen.loaders
import ansible_mitogen.strategy

# mitogen's "small SMP" case (FixedPolicy.__init__: 2-3 CPUs) and the uniprocessor; its
# Policy() base class places nothing. Every caller reads ansible_mitogen.affinity.policy when
# it places a process, so replacing it here, before the first run, is enough.
SMALL_MACHINE_CPUS = 4
if (os.cpu_count() or 1) < SMALL_MACHINE_CPUS:
    ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):  # type: ignore[misc,valid-type]
    pass
