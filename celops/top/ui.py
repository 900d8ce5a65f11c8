"""What the keys do: focus, selection, filter and sort, overlays, prompts, confirmations and actions.

No terminal here: keys come in as one-character strings or curses key names
("KEY_UP"), so the whole interaction is driven in tests by calling ``key``.
Actions go out through a ``feeds.Control`` (broadcasts) or the ``copy``
callable (the terminal's clipboard); their outcome lands in ``status``.
"""

from celops.core.cli import name_problem, rate_per_second
from celops.top.model import SORT_KEYS, TaskFilter

PANES = ("tasks", "workers", "queues")
ESCAPE = "\x1b"
ENTER = ("\n", "\r", "KEY_ENTER")
BACKSPACE = ("KEY_BACKSPACE", "\x7f", "\b")
PAGE = 10
NO_WORKER = "select a worker first (Tab to the workers pane)"

HELP = [
    ("Tab", "focus the next pane: tasks, workers, queues"),
    ("Up/Down j/k PgUp/PgDn", "move the selection"),
    ("Enter", "the selected task's details (Up/Down, Home/End or g/G scroll; Esc or q closes)"),
    ("/", "filter tasks: state names (failure, started) and parts of the name; empty clears"),
    ("s", "sort tasks by the next key: " + ", ".join(SORT_KEYS)),
    ("r", "revoke the selected task (asks first)"),
    ("t", "terminate the selected task: revoke and SIGTERM (asks first)"),
    ("l", "rate-limit the selected task's name (e.g. 10/m; 0 lifts it)"),
    ("S", "shut the selected worker down (asks first)"),
    ("P", "restart the selected worker's pool (asks first)"),
    ("a / c", "add / cancel a consumer of a queue on the selected worker"),
    ("y", "copy the selected task's id (terminal clipboard, OSC 52)"),
    ("w", "append the selected task's record (NDJSON) to a file"),
    ("Space n + -", "replay: pause, step one event, faster, slower"),
    ("?", "this help"),
    ("q Ctrl-C", "quit"),
]


class Prompt:
    """A line being typed in the status line; ``done(text)`` gets it on Enter, Esc drops it."""

    def __init__(self, label, done, text=""):
        self.label, self.done, self.text = label, done, text


class Confirm:
    """A yes/no question in the status line; only y (or Y) says yes."""

    def __init__(self, question, yes):
        self.question, self.yes = question, yes


class Ui:
    """What the person at the screen has chosen: the focused pane, each pane's selection, filter and sort,
    an overlay, a prompt or question in progress, and the status line."""

    def __init__(self, model, control=None, pacer=None, copy=None, no_control_reason="no broker to act on"):
        self.model = model
        self.control = control
        self.pacer = pacer
        self.copy = copy
        self.no_control_reason = no_control_reason
        self.focus = "tasks"
        self.selected = dict.fromkeys(PANES)  # pane -> key of the selected row (uuid, hostname, queue)
        self.index = dict.fromkeys(PANES, 0)
        self.task_filter = None
        self.sort_key = "age"
        self.overlay = None  # None, "help" or "details"
        self.details_uuid = None
        self.scroll = 0
        self.prompt = None
        self.confirm = None
        self.status = ""
        self.view = None
        self.quit = False
        self._bindings = self._keys()

    # The view the keys act on ---------------------------------------------------

    def refresh(self, limit=None):
        """Take a fresh view of the model and keep each pane's selection on the same row when it can."""
        self.view = self.model.view(self.task_filter, self.sort_key, limit)
        for pane in PANES:
            rows = self.rows(pane)
            keys = [row_key(pane, row) for row in rows]
            if self.selected[pane] in keys:
                self.index[pane] = keys.index(self.selected[pane])
            elif rows:
                self.index[pane] = min(self.index[pane], len(rows) - 1)
                self.selected[pane] = keys[self.index[pane]]
            else:
                self.index[pane], self.selected[pane] = 0, None
        return self.view

    def rows(self, pane):
        return getattr(self.view, pane) if self.view is not None else []

    def current(self, pane):
        rows = self.rows(pane)
        return rows[self.index[pane]] if rows else None

    # Keys -----------------------------------------------------------------------

    def key(self, key):
        """Handle one key; ``quit`` says when to stop."""
        if self.confirm is not None:
            confirm, self.confirm = self.confirm, None
            if key in ("y", "Y"):
                confirm.yes()
            else:
                self.status = "cancelled"
            return
        if self.prompt is not None:
            self._prompt_key(key)
            return
        if self.overlay is not None:
            self._overlay_key(key)
            return
        handler = self._bindings.get(key)
        if handler is not None:
            handler()

    def _keys(self):
        return {
            "q": self._quit, "\t": self._next_pane, "KEY_BTAB": self._previous_pane,
            "KEY_UP": lambda: self._move(-1), "k": lambda: self._move(-1),
            "KEY_DOWN": lambda: self._move(1), "j": lambda: self._move(1),
            "KEY_PPAGE": lambda: self._move(-PAGE), "KEY_NPAGE": lambda: self._move(PAGE),
            "KEY_HOME": lambda: self._move(-10**9), "KEY_END": lambda: self._move(10**9),
            **dict.fromkeys(ENTER, self._open_details), "?": self._help, "h": self._help,
            "/": self._ask_filter, "s": self._next_sort,
            "r": self._revoke, "t": self._terminate, "l": self._rate_limit,
            "S": self._shutdown, "P": self._pool_restart, "a": self._add_consumer, "c": self._cancel_consumer,
            "y": self._copy_id, "w": self._ask_write,
            " ": self._pause, "n": self._step, ".": self._step, "+": lambda: self._speed(2.0),
            "-": lambda: self._speed(0.5),
        }

    def _quit(self):
        self.quit = True

    def _next_pane(self, step=1):
        self.focus = PANES[(PANES.index(self.focus) + step) % len(PANES)]

    def _previous_pane(self):
        self._next_pane(-1)

    def _move(self, step):
        rows = self.rows(self.focus)
        if not rows:
            return
        index = max(0, min(len(rows) - 1, self.index[self.focus] + step))
        self.index[self.focus] = index
        self.selected[self.focus] = row_key(self.focus, rows[index])

    def _help(self):
        self.overlay, self.scroll = "help", 0

    def _open_details(self):
        task = self._task()
        if task is not None:
            self.overlay, self.details_uuid, self.scroll = "details", task.uuid, 0

    def _overlay_key(self, key):
        if key in ("q", ESCAPE, "?", "h") + ENTER:
            self.overlay = None
        elif key in ("KEY_UP", "k"):
            self.scroll = max(0, self.scroll - 1)
        elif key in ("KEY_DOWN", "j"):
            self.scroll += 1
        elif key == "KEY_PPAGE":
            self.scroll = max(0, self.scroll - PAGE)
        elif key in ("KEY_NPAGE", " "):
            self.scroll += PAGE
        elif key in ("KEY_HOME", "g"):
            self.scroll = 0
        elif key in ("KEY_END", "G"):
            self.scroll = 10**9  # the drawing stops at the last screenful

    # Prompts --------------------------------------------------------------------

    def _prompt_key(self, key):
        prompt = self.prompt
        if key == ESCAPE:
            self.prompt, self.status = None, "cancelled"
        elif key in ENTER:
            self.prompt = None
            prompt.done(prompt.text.strip())
        elif key in BACKSPACE:
            prompt.text = prompt.text[:-1]
        elif len(key) == 1 and key.isprintable():
            prompt.text += key

    def _ask_filter(self):
        self.prompt = Prompt("filter (states, name parts; empty clears): ", self._set_filter,
                             self.task_filter.text if self.task_filter else "")

    def _set_filter(self, text):
        self.task_filter = TaskFilter(text) if text else None
        self.status = f"filter: {text}" if text else "filter cleared"

    def _next_sort(self):
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self.status = f"sorted by {self.sort_key}"

    # Actions --------------------------------------------------------------------

    def _task(self):
        return self.current("tasks") if self.focus == "tasks" else None

    def _worker_name(self):
        """The selected worker, or, from the tasks pane, the worker of the selected task."""
        if self.focus == "workers":
            row = self.current("workers")
            return row.hostname if row else None
        task = self.current("tasks")
        return task.hostname if task else None

    def _can_act(self):
        if self.control is None:
            self.status = f"no actions: {self.no_control_reason}"
            return False
        return True

    def _target(self, found, missing):
        """``found`` when there is one and actions can be sent; else None, and the status line says why."""
        if found is None:
            self.status = missing
            return None
        return found if self._can_act() else None

    def _task_action(self, verb, command, arguments):
        task = self._target(self._task(), "select a task first (Tab to the tasks pane)")
        if task is None:
            return
        what = f"{verb} {task.uuid}"
        self.confirm = Confirm(f"{verb} task {task.uuid} ({task.name or 'unknown name'})? [y/N]",
                               lambda: self.control.send(what, command, {"task_id": [task.uuid], **arguments}))

    def _revoke(self):
        self._task_action("revoke", "revoke", {"terminate": False, "signal": None})

    def _terminate(self):
        self._task_action("terminate", "revoke", {"terminate": True, "signal": "SIGTERM"})

    def _rate_limit(self):
        task = self.current("tasks")
        if task is None or not task.name:
            self.status = "select a task with a known name first"
            return
        if self._can_act():
            self.prompt = Prompt(f"rate limit for {task.name} (e.g. 10/m, 0 lifts it): ",
                                 lambda text: self._send_rate_limit(task.name, text))

    def _send_rate_limit(self, name, text):
        try:
            rate_per_second(text)
        except ValueError as exc:
            self.status = str(exc)
            return
        self.control.send(f"rate_limit {name} {text}", "rate_limit", {"task_name": name, "rate_limit": text})

    def _worker_action(self, verb, command, arguments, silent=False):
        worker = self._target(self._worker_name(), NO_WORKER)
        if worker is not None:
            self.confirm = Confirm(f"{verb} worker {worker}? [y/N]", lambda: self.control.send(
                f"{command} {worker}", command, arguments, [worker], silent=silent))

    def _shutdown(self):
        self._worker_action("shut down", "shutdown", {}, silent=True)

    def _pool_restart(self):
        self._worker_action("restart the pool of", "pool_restart", {"modules": None, "reload": False,
                                                                      "reloader": None})

    def _consumer_prompt(self, verb, command, extra):
        worker = self._target(self._worker_name(), NO_WORKER)
        if worker is None:
            return
        queue = self.current("queues")

        def send(name):
            problem = name_problem(name)
            if problem:
                self.status = f"{problem} queue name"
                return
            self.control.send(f"{command} {name} on {worker}", command, {"queue": name, **extra}, [worker])

        self.prompt = Prompt(f"{verb} a consumer on {worker} of queue: ", send, queue.name if queue else "")

    def _add_consumer(self):
        self._consumer_prompt("add", "add_consumer", {"exchange": None, "exchange_type": None, "routing_key": None})

    def _cancel_consumer(self):
        self._consumer_prompt("cancel", "cancel_consumer", {})

    def _copy_id(self):
        task = self.current("tasks")
        if task is None:
            self.status = "no task selected"
            return
        if self.copy is not None:
            self.copy(task.uuid)
        self.status = f"copied {task.uuid}"

    def _ask_write(self):
        task = self.current("tasks")
        if task is None:
            self.status = "no task selected"
            return
        self.prompt = Prompt("append the task record to file: ", lambda path: self._write(task.uuid, path),
                             f"cev-top-{task.uuid[:8]}.ndjson")

    def _write(self, uuid, path):
        from celops.core.ndjson import dumps

        record = self.model.task_record(uuid)
        if record is None:
            self.status = f"task {uuid} is no longer in the table"
            return
        if not path:
            self.status = "no file named"
            return
        try:
            with open(path, "ab") as out:
                out.write(dumps(record))
        except OSError as exc:
            self.status = f"cannot write {path}: {exc.strerror or exc}"
            return
        self.status = f"wrote task {uuid} to {path}"

    # Replay ---------------------------------------------------------------------

    def _pause(self):
        if self.pacer is None:
            self.status = "pause is for --replay"
            return
        self.status = "paused (n steps, space goes on)" if self.pacer.toggle_pause() else "replaying"

    def _step(self):
        if self.pacer is None or not self.pacer.paused:
            self.status = "step is for a paused --replay (space pauses)"
            return
        self.pacer.step()
        self.status = "stepped one event"

    def _speed(self, factor):
        if self.pacer is None:
            self.status = "speed is for --replay"
            return
        self.status = f"speed x{self.pacer.change_speed(factor):g}"

    def status_line(self):
        """What the bottom line says: a prompt being typed, a question, or the last outcome."""
        if self.prompt is not None:
            return self.prompt.label + self.prompt.text
        if self.confirm is not None:
            return self.confirm.question
        return self.status


def row_key(pane, row):
    return row.uuid if pane == "tasks" else row.hostname if pane == "workers" else row.name
