"""cev-top's parts, split by job: ``model`` (what is known: State plus what a screen needs), ``ui`` (keys,
selection, prompts: no terminal), ``draw`` (the screen laid out on any canvas), ``terminal`` (curses and the
loop), ``feeds`` (the one adapter onto the core: events, queues, broadcasts)."""
