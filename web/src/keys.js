/**
 * Keyboard shortcuts of the editor (listed for users in panels.js SHORTCUTS).
 *
 * litegraph handles copy, paste, delete and select-all itself, but only while the canvas has the focus; when
 * the focus is elsewhere on the page (after a toolbar click) those keys are handed to it here. Keys typed into
 * a text field, a textarea or a list never trigger shortcuts.
 */

const CANVAS_KEYS = new Set(["c", "v", "a", "Delete", "Backspace"]);

export function typingInto(target) {
  const tag = target?.localName;
  return tag === "input" || tag === "textarea" || tag === "select" || target?.isContentEditable;
}

export function installKeys(editor) {
  const help = document.querySelector("#help");
  window.addEventListener("keydown", (e) => {
    if (typingInto(e.target)) return;
    const ctrl = e.ctrlKey || e.metaKey;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    let handled = true;
    if (ctrl && key === "Enter") editor.queue({ front: e.shiftKey });
    else if (ctrl && key === "z" && !e.shiftKey) editor.undo.undo();
    else if (ctrl && (key === "y" || (key === "z" && e.shiftKey))) editor.undo.redo();
    else if (ctrl && key === "s") editor.save();
    else if (ctrl && key === "o") editor.open();
    else if (ctrl && key === "g") editor.groupSelection();
    else if (!ctrl && !e.altKey && key === ".") editor.fit();
    else if (!ctrl && !e.altKey && key === "r") editor.loadDefinitions();
    else if (key === "?" || key === "F1") help.hidden = !help.hidden;
    else if (key === "Escape") {
      editor.search.close();
      help.hidden = true;
      editor.errors.hide();
      handled = false;
    } else if (e.target !== editor.canvas.canvas && (CANVAS_KEYS.has(key) && (ctrl || key.length > 1))) {
      editor.canvas.processKey(e);
      handled = false;
    } else handled = false;
    if (handled) {
      e.preventDefault();
      e.stopPropagation();
    }
  }, true);
}
