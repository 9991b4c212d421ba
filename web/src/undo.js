/**
 * Undo and redo by snapshots: after every user action the editor asks `check()`, which serialises the graph
 * as a workflow and, when it differs from the last snapshot, records it. Undo loads the previous snapshot.
 * Snapshots are the saved format itself, so undo can never restore something a file could not hold.
 */
export class UndoStack {
  /**
   * @param {() => string} snapshot the current state as a string
   * @param {(state: string) => void} restore load a state
   */
  constructor(snapshot, restore, limit = 100) {
    this.snapshot = snapshot;
    this.restore = restore;
    this.limit = limit;
    this.undoStates = [];
    this.redoStates = [];
    this.current = null;
  }

  /** Forget the history; `state` (default: now) becomes the base. */
  reset(state = this.snapshot()) {
    this.undoStates = [];
    this.redoStates = [];
    this.current = state;
  }

  /** Record the current state if it changed; returns true when it did. */
  check() {
    const state = this.snapshot();
    if (state === this.current) return false;
    if (this.current !== null) this.undoStates.push(this.current);
    if (this.undoStates.length > this.limit) this.undoStates.shift();
    this.redoStates = [];
    this.current = state;
    return true;
  }

  undo() {
    this.check();
    const state = this.undoStates.pop();
    if (state === undefined) return false;
    this.redoStates.push(this.current);
    this.current = state;
    this.restore(state);
    return true;
  }

  redo() {
    const state = this.redoStates.pop();
    if (state === undefined) return false;
    this.undoStates.push(this.current);
    this.current = state;
    this.restore(state);
    return true;
  }
}
