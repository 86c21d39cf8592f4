"""Prompt + task content -> a chat model; the answer fills a TextArea and/or maps onto Choices.

The prompt is, first found: the text the annotator typed in the prompt ``TextArea`` (interactive
call), the prompt learnt from submitted annotations (``fit``), or ``LLM_DEFAULT_PROMPT``. The task's
Text, HyperText (as plain text), Paragraphs and Image objects go with it; ``{key}`` in the prompt is
replaced by the task's ``data[key]``. Providers: any OpenAI-compatible endpoint or Azure OpenAI
(``llm_client.py``), overridable per project through the connection's extra params.
"""

from __future__ import annotations

import base64
import difflib
import io
import logging
import mimetypes
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from llm_client import ChatClient, ProviderAuthError, ProviderError, ProviderSettings, env_flag

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import LabelConfigError, MLBackendError
from label_studio_ml.media.images import context_regions, open_image
from label_studio_ml.results import regions
from label_studio_ml.results.label_config import ControlPair

logger = logging.getLogger(__name__)

PROMPT_FILE = "prompt.txt"
TEXT_OBJECTS = ("Text", "HyperText", "Paragraphs")
CONTENT_OBJECTS = (*TEXT_OBJECTS, "Image")
ANNOTATION_EVENTS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}
MAX_CLIENTS = 32
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ProviderFailure(MLBackendError):
    """The LLM provider refused or failed; the reason (never the key) goes back to LS."""

    status_code = 502


class LLMInteractive(LabelStudioMLBase):
    service_name = "llm_interactive"

    _clients: dict[tuple[Any, ...], ChatClient] = {}
    _clients_lock = threading.Lock()

    @classmethod
    def load(cls) -> dict[str, Any]:
        env = dict(os.environ)
        ProviderSettings.resolve(env)  # fail at start-up on a broken provider configuration
        return {"env": env}

    def setup(self) -> None:
        env = self.env
        self.prompt_pair, self.response_pair = self._textareas(env)
        self.choices_pair = self.config.find("Choices", CONTENT_OBJECTS, required=False)
        if self.response_pair is None and self.choices_pair is None:
            raise LabelConfigError(
                "llm_interactive needs a response TextArea or a Choices control "
                "on a Text, HyperText, Paragraphs or Image object"
            )
        target = self.response_pair or self.choices_pair
        self.objects = self._content_objects(target.to_name if target else "")
        self.multiple = (
            self._attribute(self.choices_pair.from_name, "choice") == "multiple" if self.choices_pair else False
        )
        self.learnt_prompt = ""
        if self.version_dir is not None and (self.version_dir / PROMPT_FILE).is_file():
            self.learnt_prompt = (self.version_dir / PROMPT_FILE).read_text(encoding="utf-8").strip()

    @property
    def env(self) -> dict[str, str]:
        return (self.resources or {}).get("env") or dict(os.environ)

    # --- label config ----------------------------------------------------------------------------
    def _textareas(self, env: dict[str, str]) -> tuple[ControlPair | None, ControlPair | None]:
        areas = self.config.find_all("TextArea")
        prompt_name = env.get("LLM_PROMPT_FIELD", "")
        response_name = env.get("LLM_RESPONSE_FIELD", "")
        prompt = (
            next((a for a in areas if a.from_name == prompt_name), None)
            if prompt_name
            else next((a for a in areas if a.from_name.lower().startswith("prompt")), None)
        )
        others = [a for a in areas if a is not prompt]
        response = (
            next((a for a in others if a.from_name == response_name), None)
            if response_name
            else (others[0] if others else None)
        )
        return prompt, response

    @property
    def _root(self) -> ET.Element:
        return ET.fromstring(self.label_config)

    def _attribute(self, name: str, attribute: str) -> str:
        for el in self._root.iter():
            if el.get("name") == name:
                return el.get(attribute, "")
        return ""

    def _content_objects(self, first: str) -> list[dict[str, str]]:
        """The objects whose content goes to the model: the response's object first, then the rest."""
        found = []
        for el in self._root.iter():
            if el.tag in CONTENT_OBJECTS and el.get("name") and el.get("value", "").startswith("$"):
                found.append(
                    {
                        "name": el.attrib["name"],
                        "type": el.tag,
                        "key": el.attrib["value"][1:],
                        "name_key": el.get("nameKey", "author"),
                        "text_key": el.get("textKey", "text"),
                    }
                )
        found.sort(key=lambda o: o["name"] != first)
        return found

    # --- prompt ----------------------------------------------------------------------------------
    def _context_prompt(self, context: dict[str, Any] | None) -> str:
        if self.prompt_pair is None:
            return ""
        for item in context_regions(context, "textarea"):
            if item.get("from_name") == self.prompt_pair.from_name:
                text = item["value"].get("text")
                text = "\n".join(str(t) for t in text) if isinstance(text, list) else str(text or "")
                if text.strip():
                    return text.strip()
        return ""

    def current_prompt(self, context: dict[str, Any] | None = None) -> tuple[str, str]:
        """(prompt, where it came from)."""
        typed = self._context_prompt(context)
        if typed:
            return typed, "context"
        if self.learnt_prompt:
            return self.learnt_prompt, "project"
        default = self.env.get("LLM_DEFAULT_PROMPT", "").strip()
        return default, "default" if default else "none"

    def build_messages(self, task: dict[str, Any], prompt: str) -> list[dict[str, Any]]:
        data = task.get("data") or {}
        used = set()

        def fill(match: re.Match[str]) -> str:
            key = match.group(1)
            obj = next((o for o in self.objects if o["key"] == key and o["type"] != "Image"), None)
            if obj is not None:
                used.add(obj["name"])
                return self._object_text(task, obj)
            if key in data and isinstance(data[key], (str, int, float)):
                return str(data[key])
            return match.group(0)

        text = _PLACEHOLDER.sub(fill, prompt)
        blocks = [o for o in self.objects if o["type"] != "Image" and o["name"] not in used and o["key"] in data]
        if blocks:
            parts = [self._object_text(task, o) for o in blocks]
            if len(blocks) > 1:
                parts = [f"{o['name']}:\n{p}" for o, p in zip(blocks, parts, strict=True)]
            text = f"{text}\n\n" + "\n\n".join(parts)
        if self.choices_pair is not None:
            options = ", ".join(self.choices_pair.labels)
            text += (
                f"\n\nAnswer with one or more of these options, separated by commas: {options}."
                if self.multiple
                else f"\n\nAnswer with exactly one of these options: {options}."
            )
        images = [o for o in self.objects if o["type"] == "Image" and data.get(o["key"])]
        content: Any = text.strip()
        if images and env_flag(self.env, "LLM_SEND_IMAGES", True):
            content = [{"type": "text", "text": content}]
            content += [{"type": "image_url", "image_url": {"url": self._image_data_url(task, o)}} for o in images]
        messages: list[dict[str, Any]] = []
        system = self.env.get("LLM_SYSTEM_PROMPT", "").strip()
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": content})
        return messages

    def _object_text(self, task: dict[str, Any], obj: dict[str, str]) -> str:
        value = (task.get("data") or {}).get(obj["key"])
        if obj["type"] == "Paragraphs":
            if not isinstance(value, list):
                return str(value or "")
            lines = []
            for entry in value:
                if isinstance(entry, dict):
                    who, said = entry.get(obj["name_key"]), entry.get(obj["text_key"], "")
                    lines.append(f"{who}: {said}" if who else str(said))
            return "\n".join(lines)
        text = self.read_text(task, obj["key"])
        return html_to_text(text) if obj["type"] == "HyperText" else text

    def _image_data_url(self, task: dict[str, Any], obj: dict[str, str]) -> str:
        """The image as LS shows it (EXIF-rotated), its longest side capped, as a data URL."""
        path = self.get_local_path(task["data"][obj["key"]], task_id=task.get("id"))
        image = open_image(path)
        limit = int(self.env.get("LLM_IMAGE_MAX_SIDE", "1024"))
        if max(image.size) > limit:
            image.thumbnail((limit, limit))
        buffer = io.BytesIO()
        kind = mimetypes.guess_type(Path(path).name.split("__", 1)[-1])[0]
        if kind == "image/png":
            image.save(buffer, "PNG")
        else:
            kind = "image/jpeg"
            image.save(buffer, "JPEG", quality=90)
        return f"data:{kind};base64," + base64.b64encode(buffer.getvalue()).decode()

    # --- provider --------------------------------------------------------------------------------
    def client(self) -> ChatClient:
        """A client for the effective provider settings (env + this project's extra params)."""
        try:
            settings = ProviderSettings.resolve(self.env, self.extra_params)
        except ValueError as exc:
            raise ProviderFailure(f"provider settings: {exc}") from None
        key = settings.fingerprint()
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                while len(self._clients) >= MAX_CLIENTS:
                    self._clients.pop(next(iter(self._clients)))
                client = self._clients[key] = ChatClient(settings)
        return client

    # --- predict ---------------------------------------------------------------------------------
    def predict(
        self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        prompt, source = self.current_prompt(context)
        if not prompt:
            logger.info("project %s: no prompt (typed, learnt or LLM_DEFAULT_PROMPT): empty results", self.project_id)
            return [{"result": [], "score": None} for _ in tasks]
        client = self.client()
        workers = max(1, min(len(tasks), int(self.env.get("LLM_CONCURRENCY", "4"))))
        logger.info(
            "project %s: %d task(s) -> %s (%s, prompt from %s)",
            self.project_id,
            len(tasks),
            client.settings.endpoint,
            client.settings.model,
            source,
        )
        deadline = time.monotonic() + client.settings.deadline  # one budget for the whole request
        with ThreadPoolExecutor(workers, thread_name_prefix="llm") as pool:
            futures = [pool.submit(self._predict_one, client, task, prompt, deadline) for task in tasks]
            outcomes: list[Any] = []
            for future in futures:
                try:
                    outcomes.append(future.result())
                except ProviderAuthError as exc:
                    for other in futures:
                        other.cancel()
                    logger.error("LLM authentication failed: %s", exc.reason)
                    raise ProviderFailure(exc.reason) from None
                except ProviderError as exc:
                    outcomes.append(exc)
        failures = [o for o in outcomes if isinstance(o, ProviderError)]
        if failures and (context is not None or len(failures) == len(tasks)):
            # nothing is stored in LS: the annotator sees the reason, a batch can be retried later
            raise ProviderFailure(f"LLM call failed: {failures[0].reason}")
        out = []
        for task, outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, ProviderError):
                logger.error("task %s: LLM call failed, empty result: %s", task.get("id"), outcome.reason)
                out.append({"result": [], "score": None})
            else:
                out.append(outcome)
        return out

    def _predict_one(self, client: ChatClient, task: dict[str, Any], prompt: str, deadline: float) -> dict[str, Any]:
        completion = client.complete(self.build_messages(task, prompt), deadline=deadline)
        answer = completion.text.strip()
        logger.info(
            "task %s: answer of %d chars in %.2f s (%d attempt(s), finish %s)",
            task.get("id"),
            len(answer),
            completion.seconds,
            completion.attempts,
            completion.finish_reason,
        )
        result: list[dict[str, Any]] = []
        if self.prompt_pair is not None:
            result.append(regions.textarea(self.prompt_pair, prompt))
        if self.response_pair is not None and answer:
            result.append(regions.textarea(self.response_pair, answer))
        score = None
        if self.choices_pair is not None:
            labels, score = match_choices(answer, self.choices_pair, self.multiple)
            if labels:
                result.append(regions.choices(self.choices_pair, labels, score))
            else:
                logger.info(
                    "task %s: the answer matches none of the choices %s", task.get("id"), list(self.choices_pair.labels)
                )
        return {"result": result, "score": score}

    # --- fit: keep the prompt from submitted annotations -------------------------------------------
    def fit(self, event: str, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.prompt_pair is None:
            return {"prompt": None, "reason": "no prompt TextArea in the label config"}
        prompt = ""
        for name, payload in kwargs.get("events") or [(event, data)]:
            if name in ANNOTATION_EVENTS and isinstance(payload.get("annotation"), dict):
                prompt = self._annotation_prompt(payload["annotation"]) or prompt
        if not prompt and event == "START_TRAINING" and self.settings.label_studio_url:
            annotations = [a for t in self.fetch_labeled_tasks() for a in t["annotations"]]
            for annotation in sorted(annotations, key=lambda a: a.get("updated_at") or ""):
                prompt = self._annotation_prompt(annotation) or prompt
        if not prompt:
            return {"prompt": None}
        # an unchanged prompt gives identical artifacts, which core keeps as the current version
        (self.output_dir / PROMPT_FILE).write_text(prompt + "\n", encoding="utf-8")
        logger.info("project %s: stored a prompt of %d chars", self.project_id, len(prompt))
        return {"prompt": prompt}

    def _annotation_prompt(self, annotation: dict[str, Any]) -> str:
        if annotation.get("was_cancelled"):
            return ""
        for item in annotation.get("result") or []:
            if isinstance(item, dict) and item.get("from_name") == self.prompt_pair.from_name:  # type: ignore[union-attr]
                text = (item.get("value") or {}).get("text")
                text = "\n".join(str(t) for t in text) if isinstance(text, list) else str(text or "")
                if text.strip():
                    return text.strip()
        return ""


#: how like a choice a one-word answer must be (difflib's ratio, the measure upstream's example uses):
#: "tech" -> "technology" is 0.57, "Postive" -> "positive" 0.93; unrelated words stay under 0.4
LOOSE_MATCH_RATIO = 0.5


def match_choices(answer: str, pair: ControlPair, multiple: bool = False) -> tuple[list[str], float | None]:
    """Map a free-text answer onto the config's choices: the whole answer (exact, case-insensitive,
    ``predicted_values``), then each comma/line-separated piece, then choices named inside the answer
    (whole words, earliest first), then one-word pieces that resemble exactly one choice most (an
    abbreviation or a typo, matched loosely as upstream's example does). Returns the labels and how
    sure the match is."""

    def clean(text: str) -> str:
        return text.strip().strip(" \t\"'`*.:;!()[]").strip()

    names: dict[str, str] = {}  # every name a choice answers to (lower case) -> the choice
    for label in pair.labels:
        for value in pair.labels_attrs.get(label, {}).get("predicted_values", "").split(","):
            if value.strip():
                names.setdefault(value.strip().lower(), label)
    for label in pair.labels:
        names[label.lower()] = label

    def lookup(text: str) -> str | None:
        return pair.map_label(text) or names.get(text.lower())

    whole = clean(answer)
    exact = lookup(whole) if whole else None
    if exact is not None:
        return [exact], 1.0 if exact == whole else 0.9
    pieces = [clean(p) for p in re.split(r"[,\n;/]|\band\b", answer) if clean(p)]
    found = list(dict.fromkeys(m for m in map(lookup, pieces) if m is not None))
    if found and (multiple or len(found) == 1) and (multiple or len(pieces) <= 3):
        return (found if multiple else found[:1]), 0.8
    hits: list[tuple[int, int, str]] = []
    for name, label in names.items():
        match = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", answer, re.IGNORECASE)
        if match:
            hits.append((match.start(), -len(name), label))
    hits.sort()
    labels = list(dict.fromkeys(label for _, _, label in hits))
    if labels:
        return (labels if multiple else labels[:1]), 0.6 if len(labels) == 1 else 0.4
    loose = list(dict.fromkeys(m for m in (_closest(p, names) for p in pieces if len(p.split()) == 1) if m))
    if loose and (multiple or len(loose) == 1):
        return (loose if multiple else loose[:1]), 0.5
    return [], None


def _closest(word: str, names: dict[str, str]) -> str | None:
    """The choice whose name ``word`` resembles most (a name it begins, of 3+ letters, first: "neg" is
    Negative although "none" shares as many letters), if enough and no other choice as much."""
    word = word.lower()
    scored: dict[str, tuple[bool, float]] = {}
    for name, label in names.items():
        score = (len(word) >= 3 and name.startswith(word), difflib.SequenceMatcher(None, word, name).ratio())
        scored[label] = max(scored.get(label, (False, 0.0)), score)
    ranked = sorted(scored.items(), key=lambda item: item[1], reverse=True)
    if not ranked or ranked[0][1][1] < LOOSE_MATCH_RATIO or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return None
    return ranked[0][0]


class _TextOnly(HTMLParser):
    SKIP = {"script", "style", "head", "title"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOnly()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)
