"""Several Telegram accounts (issue 16): which account reads which channel and what each account is doing.

``assign`` (pure: the plan — prefer an account that has joined the channel, never one that cannot read it,
respect each account's request budget, deterministic), ``registry`` (the accounts' state and what each knows
of each channel, in the database), ``leases`` (leases across processes that follow the plan). The Telethon
clients themselves, one per account, and the failover are in :mod:`monitor.jobs.accounts`."""
