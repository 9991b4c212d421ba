"""Running from the editor against the real server: progress on the running node, results inside nodes,
validation and execution errors on the offending nodes, interrupt, the queue and history panel."""
from __future__ import annotations

from tests.web.editor_page import (events, open_editor, record_events, settle, wait_finished, wait_for_event,
                                   workflow)


def meta(pos, size=None, **more):
    return {"pos": list(pos), **({"size": list(size)} if size else {}), **more}


def slow_workflow(steps: int, delay: float, value: float = 4.0) -> dict:
    return {
        "1": {"class_type": "Constant", "inputs": {"value": value}, "_meta": meta((40, 120))},
        "2": {"class_type": "Slow", "inputs": {"x": ["1", 0], "steps": steps, "delay": delay},
              "_meta": meta((380, 120))},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}, "_meta": meta((760, 120), (300, 120))},
    }


def test_queue_shows_progress_on_the_running_node_and_results_in_the_output_node(page):
    open_editor(page, slow_workflow(steps=12, delay=0.15, value=4.0))
    record_events(page)
    page.click("#queue-button")
    page.wait_for_function("app.run.isRunning('2') && app.run.progress && app.run.progress.value >= 2")
    # the status line names the running node with its step count, the node is highlighted with its progress
    status = page.locator("#status").inner_text()
    assert "running: Slow" in status and "/12" in status
    assert page.evaluate("app.graph.getNodeById('2').progress") > 0
    page.screenshot(path=str(page_artifact(page, "progress")))
    wait_finished(page)
    assert [e[0] for e in events(page)].count("progress") == 12
    assert page.evaluate("app.run.runningNode") is None
    assert page.evaluate("app.run.outputs.get('3')") == {"text": ["4.0"]}


def test_ctrl_enter_queues_batch_count_times(page):
    open_editor(page, slow_workflow(steps=1, delay=0.0, value=1.0))
    record_events(page)
    page.fill("#batch-count", "3")
    page.locator("#graph-canvas").click(position={"x": 700, "y": 600})
    page.keyboard.press("Control+Enter")
    wait_finished(page, count=3)
    starts = [e for e in events(page) if e[0] == "execution_start"]
    assert len({e[1]["prompt_id"] for e in starts}) == 3


def test_refused_workflow_shows_the_server_messages_on_the_nodes(page):
    page.allowed_errors.append(r"status of 400")  # the browser logs the refused POST /prompt itself
    open_editor(page, {
        "1": {"class_type": "Constant", "inputs": {"value": 1.0}, "_meta": meta((40, 120))},
        "2": {"class_type": "Scale", "inputs": {"factor": -3, "mode": "multiply"}, "_meta": meta((380, 120))},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}, "_meta": meta((760, 120))},
    })
    record_events(page)
    page.click("#queue-button")
    errors = page.locator("#errors")
    errors.wait_for()
    text = errors.inner_text()
    assert "The server refused the workflow" in text
    assert "Value -3 smaller than min of 0" in text and "Required input is missing" in text
    assert sorted(page.evaluate("app.run.errorsOf('2').inputs")) == ["factor", "x"]
    assert page.evaluate("app.graph.getNodeById('2').inputs.find(s => s.name === 'x').hasErrors")
    assert page.evaluate("app.run.errorsOf('1')") is None and page.evaluate("app.run.errorsOf('3')") is None
    assert not [e for e in events(page) if e[0] == "execution_start"]  # nothing was queued


def test_outputs_failing_validation_are_shown_while_the_rest_runs(page):
    wf = slow_workflow(steps=1, delay=0.0)
    wf["4"] = {"class_type": "Scale", "inputs": {"x": ["1", 0], "factor": 500, "mode": "multiply"},
               "_meta": meta((380, 320))}
    wf["5"] = {"class_type": "Show", "inputs": {"value": ["4", 0]}, "_meta": meta((760, 320))}
    open_editor(page, wf)
    page.click("#queue-button")
    errors = page.locator("#errors")
    errors.wait_for()
    text = errors.inner_text()
    assert "Value 500 bigger than max of 100" in text and "#4 Scale" in text
    error = page.evaluate("app.run.errorsOf('4')")
    assert error["inputs"] == ["factor"]
    assert any("bigger than max" in m for m in error["messages"])
    assert page.evaluate("app.graph.getNodeById('4').inputs.find(s => s.name === 'factor').hasErrors")
    assert page.evaluate("app.run.errorsOf('2')") is None
    # a click on the message centres the offending node
    page.locator(".ll-error-line[data-node='4']").click()
    assert page.evaluate("Object.keys(app.canvas.selected_nodes)") == ["4"]


def test_execution_error_is_shown_on_the_failing_node(page):
    open_editor(page, {
        "1": {"class_type": "Constant", "inputs": {"value": 1.0}, "_meta": meta((40, 120))},
        "2": {"class_type": "Fail", "inputs": {"x": ["1", 0], "message": "the stub failed"}, "_meta": meta((380, 120))},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}, "_meta": meta((760, 120))},
    })
    record_events(page)
    page.click("#queue-button")
    wait_for_event(page, "execution_error")
    error = page.evaluate("app.run.errorsOf('2')")
    assert error["messages"] == ["RuntimeError: the stub failed"]
    assert "the stub failed" in page.locator("#errors").inner_text()


def test_interrupt_stops_the_run(page):
    open_editor(page, slow_workflow(steps=200, delay=0.05))
    record_events(page)
    page.click("#queue-button")
    page.wait_for_function("app.run.isRunning('2')")
    page.click("#interrupt-button")
    wait_for_event(page, "execution_interrupted")
    assert page.locator(".ll-notice").first.inner_text() == "Run interrupted"
    assert page.evaluate("app.run.runningNode") is None


def test_queue_panel_cancels_pending_and_opens_history(page):
    open_editor(page, slow_workflow(steps=400, delay=0.05, value=9.0))  # interrupted below
    record_events(page)
    page.click("#queue-panel-button")
    page.click("#queue-button")
    page.wait_for_function("app.run.isRunning('2')")
    page.evaluate("document.querySelector('#batch-count').value = 1")
    # a second prompt waits behind the first; cancel it from the panel
    page.evaluate("app.api.queuePrompt({...app.toWorkflow(), '1': {...app.toWorkflow()['1'], inputs: {value: 5}}}, {})")
    cancel = page.locator(".ll-queue-item .ll-cancel")
    cancel.wait_for()
    cancel.click()
    page.wait_for_function("document.querySelectorAll('.ll-queue-item .ll-cancel').length === 0")
    page.click("#interrupt-button")
    wait_finished(page)
    page.wait_for_function("document.querySelectorAll('.ll-history-item').length >= 1")
    starts = [e for e in events(page) if e[0] == "execution_start"]
    assert len(starts) == 1  # the cancelled prompt never ran
    # open a past run: its workflow comes back (here: after changing the open one)
    page.evaluate("app.load({}, {name: 'other'})")
    assert workflow(page) == {}
    page.locator(".ll-history-item button").first.click()
    settle(page)
    assert workflow(page)["1"]["inputs"]["value"] == 9.0


def page_artifact(page, suffix):
    from tests.web.conftest import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{suffix}.png"


def test_seed_modes_are_applied_by_the_server(page):
    open_editor(page, {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 5},
              "_meta": meta((40, 120), (280, 90), control_after_generate={"value": "increment"})},
        "2": {"class_type": "Show", "inputs": {"value": ["1", 0]}, "_meta": meta((420, 120), (240, 100))},
    })
    record_events(page)
    page.fill("#batch-count", "2")
    page.click("#queue-button")
    wait_finished(page, count=2)
    shown = [e[1]["output"]["text"][0] for e in events(page) if e[0] == "executed" and e[1]["node"] == "2"]
    assert shown == ["5", "6"]  # increment: the submitted value, then one more per submission
    assert workflow(page)["1"]["inputs"]["value"] == 5  # the browser never changes the seed itself
    # switch the mode in the node: fixed → increment → decrement → randomize
    from tests.web.editor_page import widget

    page.mouse.click(*widget(page, "1", "value_control_after_generate", 0.95))
    page.mouse.click(*widget(page, "1", "value_control_after_generate", 0.95))
    settle(page)
    assert workflow(page)["1"]["_meta"]["control_after_generate"] == {"value": "randomize"}
    page.fill("#batch-count", "1")
    page.click("#queue-button")
    wait_finished(page, count=3)
    shown = [e[1]["output"]["text"][0] for e in events(page) if e[0] == "executed" and e[1]["node"] == "2"]
    assert len(shown) == 3 and shown[2] not in ("5", "6", "7")
