"""Real WireGuard backends: the kernel module and wireguard-go, configured with ``wg``/``ip``.

- :mod:`.kernel`: :class:`~.kernel.KernelBackend` (``ip link add ... type wireguard``).
- :mod:`.userspace`: :class:`~.userspace.WireGuardGoBackend` (a supervised
  ``wireguard-go -f`` child).
- :mod:`.base`: what both share (``wg set``, ``wg show dump``, ``ip address``).
- :mod:`.wgtools`: the command lines and output parsers, pure.
- :mod:`.commands`: running commands without a shell, errors with stderr.
- :mod:`.prereq`: what the system must have (rights, tools, module), ``--backend auto``.
- :mod:`.keywatch` and :mod:`.rotate`: key rotation without restarting the agent.

They import the contract (:mod:`wiremesh.agent.backend`); only the factory
(:mod:`wiremesh.agent.factory`) imports them, so the memory backend and the session loop
never load this package.
"""
