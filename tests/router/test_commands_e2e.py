"""In-chat ``!/`` commands end to end through each front end (Falcon ASGI test client, echo backend).

The echo backend answers with the last user message and reports the model it was asked for, which
makes stripping, routing and one-off targets observable from the client side.
"""

from __future__ import annotations

import uuid

import pytest

from proxy_support import FRONTENDS, chat, chat_body, chat_path, reply_model, reply_text

pytestmark = pytest.mark.parametrize("frontend", FRONTENDS)


def sid() -> str:
    return "t-" + uuid.uuid4().hex[:12]


# Every command of the registry, alone in a message: the proxy answers it itself.
COMMAND_ONLY = [
    ("!/hello", "Welcome to llm-interactive-proxy."),
    ("!/help", "Commands:"),
    ("!/help(route-append)", "example: !/route-append("),  # the one command explained, not the list
    ("!/set(project=demo)", "project set to demo"),
    ("!/unset(project)", "project reset to its default"),
    ("!/backend(other)", "backend set to other"),
    ("!/model(echo-large)", "model set to echo-large"),
    ("!/oneoff(other:special)", "the next request goes to other:special"),
    ("!/interactive(true)", "interactive set to true"),
    ("!/temperature(0.7)", "temperature set to 0.7"),
    ("!/pwd", "project directory: not set"),
    ("!/route-list", "Session rules: none"),
    ("!/route-explain", "rules, in evaluation order:"),
    ("!/route-clear(gpt-4)", "route for gpt-4 cleared"),
    ("!/route-append(gpt-4, echo:other)", "route for gpt-4: echo:other"),
    ("!/route-prepend(gpt-4, other:first)", "route for gpt-4: other:first"),
]


QUOTED_BY_THEIR_REPLY = {"!/help"}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("command,expected", COMMAND_ONLY, ids=[c for c, _ in COMMAND_ONLY])
def test_command_only_message_is_answered_by_the_proxy(client, frontend, command, expected, stream):
    result = chat(client, frontend, command, session=sid(), stream=stream)
    assert result.status_code == 200, result.text
    assert (result.headers["content-type"].startswith("text/event-stream")) is stream
    text = reply_text(frontend, result)
    assert expected in text
    # The reply never repeats the command, except the list of commands, which names itself.
    assert (command in text) is (command in QUOTED_BY_THEIR_REPLY)


def test_help_lists_every_registered_command(client, frontend):
    from dsl.registry import COMMANDS

    text = reply_text(frontend, chat(client, frontend, "!/help", session=sid()))
    for name in COMMANDS:
        assert f"!/{name}" in text


def test_help_lists_every_group_strategy(client, frontend):
    from dsl.registry import STRATEGIES

    for command in ("!/help", "!/help(route-append)"):
        text = reply_text(frontend, chat(client, frontend, command, session=sid()))
        for name, summary in STRATEGIES.items():
            assert f"{name}(a | b)" in text and summary in text


def test_a_strategy_group_in_a_session_route(client, frontend):
    s = sid()
    text = reply_text(frontend, chat(client, frontend, "!/route-append(gpt-4, fastest(echo:a | echo:b))", session=s))
    assert "route for gpt-4: fastest(echo:a | echo:b)" in text
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) in ("a", "b")
    text = reply_text(frontend, chat(client, frontend, "!/route-append(gpt-4, fastets(echo:a | echo:b))", session=s))
    assert "unknown group strategy 'fastets'" in text and "did you mean 'fastest'" in text


def test_commands_are_stripped_before_forwarding(client, frontend):
    result = chat(client, frontend, "please !/temperature(0.3) answer !/set(project=p1) this", session=sid())
    assert reply_text(frontend, result) == "please answer this"


def test_stripping_in_a_streamed_reply(client, frontend):
    result = chat(client, frontend, "!/model(echo-large) tell me something long enough to be chunked",
                  session=sid(), stream=True)
    assert reply_text(frontend, result) == "tell me something long enough to be chunked"


def test_session_state_persists_with_the_same_session_id(client, frontend):
    s = sid()
    reply_text(frontend, chat(client, frontend, "!/model(echo-large)", session=s))
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "echo-large"
    assert reply_model(frontend, chat(client, frontend, "hi", session=sid())) == "gpt-4"
    assert "model: echo-large" in reply_text(frontend, chat(client, frontend, "!/hello", session=s))


def test_session_id_is_generated_when_absent_and_usable(client, frontend):
    first = chat(client, frontend, "!/set(project=generated)")
    new_id = first.headers["x-session-id"]
    assert new_id and len(new_id) >= 16
    hello = chat(client, frontend, "!/hello", session=new_id)
    assert hello.headers["x-session-id"] == new_id
    assert f"session: {new_id}" in reply_text(frontend, hello)
    assert "project: generated" in reply_text(frontend, hello)
    assert chat(client, frontend, "hi").headers["x-session-id"] != new_id


def test_session_id_is_returned_on_streams(client, frontend):
    s = sid()
    result = chat(client, frontend, "hello there", session=s, stream=True)
    assert result.headers["x-session-id"] == s


BAD_COMMANDS = [
    "!/temperature(hot)",
    "!/temperature(7)",
    "!/backend(nowhere)",
    "!/nosuchcommand",
    "!/route-append(gpt-4)",
    "!/oneoff(nowhere:model)",
    "!/set(colour=blue)",
    "!/model(",
    "!/project(demo) !/temperature(0.5)",
]


@pytest.mark.parametrize("command", BAD_COMMANDS)
def test_bad_command_names_the_error_and_leaves_the_session_unchanged(client, frontend, command):
    s = sid()
    before = reply_text(frontend, chat(client, frontend, "!/hello", session=s))
    reply = reply_text(frontend, chat(client, frontend, f"!/model(echo-large) {command} and a prompt", session=s))
    assert "could not run your command" in reply and "nothing was changed" in reply
    assert "Traceback" not in reply
    after = reply_text(frontend, chat(client, frontend, "!/hello", session=s))
    assert after == before
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "gpt-4"


def test_bad_command_is_answered_in_a_stream_when_streaming(client, frontend):
    result = chat(client, frontend, "!/temperature(hot)", session=sid(), stream=True)
    assert "could not run your command" in reply_text(frontend, result)


def test_oneoff_applies_to_exactly_one_request(client, frontend):
    s = sid()
    reply_text(frontend, chat(client, frontend, "!/oneoff(other:special)", session=s))
    assert reply_model(frontend, chat(client, frontend, "first", session=s)) == "special"
    assert reply_model(frontend, chat(client, frontend, "second", session=s)) == "gpt-4"
    assert "one-off" not in reply_text(frontend, chat(client, frontend, "!/hello", session=s))


def test_oneoff_riding_with_a_prompt_is_used_by_that_request_only(client, frontend):
    s = sid()
    assert reply_model(frontend, chat(client, frontend, "!/oneoff(other:special) go", session=s)) == "special"
    assert reply_model(frontend, chat(client, frontend, "again", session=s)) == "gpt-4"


def test_route_edits_change_the_target(client, frontend):
    s = sid()
    reply_text(frontend, chat(client, frontend, "!/route-append(gpt-4, echo:other)", session=s))
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "other"
    assert reply_model(frontend, chat(client, frontend, "hi", session=s, model="gpt-3.5")) == "gpt-3.5"
    listing = reply_text(frontend, chat(client, frontend, "!/route-list", session=s))
    assert "gpt-4" in listing and "echo:other" in listing
    reply_text(frontend, chat(client, frontend, "!/route-prepend(gpt-4, other:first)", session=s))
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "first"
    reply_text(frontend, chat(client, frontend, "!/route-clear(gpt-4)", session=s))
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "gpt-4"
    assert "Session rules: none" in reply_text(frontend, chat(client, frontend, "!/route-list", session=s))


def test_backend_and_model_commands(client, frontend):
    s = sid()
    reply_text(frontend, chat(client, frontend, "!/backend(other) !/model(m2)", session=s))
    hello = reply_text(frontend, chat(client, frontend, "!/hello", session=s))
    assert "backend: other" in hello and "model: m2" in hello
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "m2"
    reply_text(frontend, chat(client, frontend, "!/model(other:m3)", session=s))
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "m3"


def test_set_unset_pwd_and_temperature(client, frontend):
    s = sid()
    reply_text(frontend, chat(client, frontend, '!/set(project_dir="/tmp/my project", project=p)', session=s))
    assert "/tmp/my project" in reply_text(frontend, chat(client, frontend, "!/pwd", session=s))
    reply_text(frontend, chat(client, frontend, "!/temperature(0.25)", session=s))
    hello = reply_text(frontend, chat(client, frontend, "!/hello", session=s))
    assert "project: p" in hello and "temperature: 0.25" in hello
    reply_text(frontend, chat(client, frontend, "!/unset(project_dir, project, temperature)", session=s))
    assert "not set" in reply_text(frontend, chat(client, frontend, "!/pwd", session=s))
    hello = reply_text(frontend, chat(client, frontend, "!/hello", session=s))
    assert "project:" not in hello and "temperature:" not in hello


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_interactive_mode_prepends_a_report_to_mixed_replies(client, frontend, stream):
    s = sid()
    reply_text(frontend, chat(client, frontend, "!/interactive(true)", session=s))
    text = reply_text(frontend, chat(client, frontend, "!/temperature(0.5) what now", session=s, stream=stream))
    assert text.startswith("[proxy]\n") and "temperature set to 0.5" in text
    assert text.endswith("what now")
    plain = reply_text(frontend, chat(client, frontend, "no commands here", session=s, stream=stream))
    assert plain == "no commands here"


def test_without_interactive_mode_mixed_replies_carry_no_report(client, frontend):
    text = reply_text(frontend, chat(client, frontend, "!/temperature(0.5) what now", session=sid()))
    assert text == "what now"


@pytest.mark.parametrize("text", [
    "```\n!/hello\n```",
    "run `!/backend(other)` later",
    "~~~sh\necho !/model(x)\n~~~\nand more",
])
def test_commands_inside_code_are_not_executed(client, frontend, text):
    s = sid()
    assert reply_text(frontend, chat(client, frontend, text, session=s)) == text
    hello = reply_text(frontend, chat(client, frontend, "!/hello", session=s))
    assert "backend: echo (default)" in hello and "model: as requested" in hello


@pytest.mark.parametrize("how", ["config", "flag"])
def test_disabled_commands_are_forwarded_as_text(make_client, frontend, how):
    if how == "config":
        client = make_client(disable_auth=True, interactive_commands=False)
    else:
        client = make_client(disable_auth=True, disable_commands=True)
    s = sid()
    assert reply_text(frontend, chat(client, frontend, "!/hello", session=s)) == "!/hello"
    assert reply_text(frontend, chat(client, frontend, "!/model(x) hi", session=s)) == "!/model(x) hi"
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "gpt-4"


def test_earlier_command_turns_do_not_reach_the_backend(client, frontend, monkeypatch):
    from backends.echo import EchoBackend

    seen = []
    original = EchoBackend._reply

    def spy(self, request):
        seen.append([(m.role, m.text()) for m in request.messages])
        return original(self, request)

    monkeypatch.setattr(EchoBackend, "_reply", spy)
    history = [("user", "!/backend(echo)"), ("assistant", "backend set to echo"),
               ("user", "first question"), ("assistant", "first answer"),
               ("user", "!/temperature(0.2) second question")]
    assert reply_text(frontend, chat(client, frontend, history, session=sid())) == "second question"
    assert seen == [[("user", "first question"), ("assistant", "first answer"), ("user", "second question")]]


def test_custom_command_prefix(make_client, frontend):
    client = make_client(disable_auth=True, command_prefix="##")
    s = sid()
    assert "Welcome" in reply_text(frontend, chat(client, frontend, "##hello", session=s))
    assert reply_text(frontend, chat(client, frontend, "!/hello", session=s)) == "!/hello"


def test_client_reminders_around_a_command(client, frontend):
    """Claude Code wraps the user's text with <system-reminder> parts: still a command-only message."""
    reminder, command = "<system-reminder>\nThe date is today.\n</system-reminder>", "!/model(echo-large)"
    body = chat_body(frontend, "placeholder")
    if frontend == "gemini":
        body["contents"][0]["parts"] = [{"text": reminder}, {"text": command}]
    elif frontend == "responses":
        body["input"][0]["content"] = [{"type": "input_text", "text": reminder}, {"type": "input_text", "text": command}]
    else:
        body["messages"][0]["content"] = [{"type": "text", "text": reminder}, {"type": "text", "text": command}]
    s = sid()
    result = client.simulate_post(chat_path(frontend), json=body, headers={"x-session-id": s})
    assert "model set to echo-large" in reply_text(frontend, result)
    assert reply_model(frontend, chat(client, frontend, "hi", session=s)) == "echo-large"


def test_claude_code_session_header_is_used(client, frontend):
    s = sid()
    reply_text(frontend, chat(client, frontend, "!/model(echo-large)", headers={"x-claude-code-session-id": s}))
    result = chat(client, frontend, "hi", headers={"x-claude-code-session-id": s})
    assert result.headers["x-session-id"] == s and reply_model(frontend, result) == "echo-large"


@pytest.mark.parametrize("command,word", [("!/model(openrouter:x)", "model"), ("!/oneoff(openrouter:x)", "oneoff"),
                                          ("!/set(model=openrouter:x)", "set: model")])
def test_a_target_with_an_unknown_backend_is_an_error_whatever_the_command(client, frontend, command, word):
    """``!/model``, ``!/oneoff`` and ``!/set(model=...)`` read ``a:b`` the same way: backend ``a``
    must be configured; the reply names it and nothing is set."""
    sid = f"unknown-{frontend}-{word.replace(' ', '').replace(':', '')}"
    text = reply_text(frontend, chat(client, frontend, command, session=sid))
    assert f"{word}: unknown backend 'openrouter'" in text and "nothing was changed" in text, text
    assert "echo, other" in text
    assert reply_model(frontend, chat(client, frontend, "hi", session=sid)) == "gpt-4"


def test_model_reply_says_what_was_set(client, frontend):
    both = reply_text(frontend, chat(client, frontend, "!/model(other:special)", session=f"said-1-{frontend}"))
    assert "backend set to other" in both and "model set to special" in both
    quoted = reply_text(frontend, chat(client, frontend, '!/model("llama3:8b")', session=f"said-2-{frontend}"))
    assert "model set to llama3:8b" in quoted and "backend set" not in quoted
    assert reply_model(frontend, chat(client, frontend, "hi", session=f"said-2-{frontend}")) == "llama3:8b"
