// event-emitter.js: a small event emitter that works the same in browsers and Node.js. A
// listener that throws does not disturb the others: its exception goes to the 'error'
// listeners (or console.error when there are none).

export class Emitter {
  constructor() { this._listeners = new Map(); }

  on(type, listener) {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    let list = this._listeners.get(type);
    if (!list) this._listeners.set(type, (list = []));
    list.push(listener);
    return () => this.off(type, listener);
  }

  once(type, listener) {
    const off = this.on(type, (ev) => { off(); listener(ev); });
    return off;
  }

  off(type, listener) {
    const list = this._listeners.get(type);
    if (!list) return;
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  }

  listenerCount(type) { return (this._listeners.get(type) || []).length; }

  _emit(type, ev) {
    const list = this._listeners.get(type);
    if (!list || list.length === 0) return;
    for (const listener of list.slice()) {
      try {
        listener(ev);
      } catch (err) {
        this._listenerFailed(type, err);
      }
    }
  }

  _listenerFailed(type, err) {
    if (type !== 'error' && this.listenerCount('error') > 0) {
      const e = err instanceof Error ? err : new Error(String(err));
      e.source = 'listener';
      this._emit('error', e);
    } else {
      console.error(`router-client: a '${type}' listener threw`, err);
    }
  }
}
