/**
 * The promise a client's `connect()` returns: made by the first call (which opens the
 * link) and shared by the calls after it, settled once, by the server's acceptance or
 * by the first failure. A close forgets it, so that the next `connect()` makes a new one.
 */
export class ReadyGate<T = void> {
  #promise: Promise<T> | undefined;
  #settle: ((err: Error | undefined, value?: T) => void) | undefined;

  /** The promise; the first call since the last `forget` makes it and runs `open`. */
  wait(open: () => void): Promise<T> {
    this.#promise ??= new Promise<T>((resolve, reject) => {
      this.#settle = (err, value) => {
        this.#settle = undefined;
        if (err) reject(err);
        else resolve(value as T);
      };
      open();
    });
    return this.#promise;
  }

  /** A promise is made and not settled yet. */
  get waiting(): boolean {
    return this.#settle !== undefined;
  }

  /** Resolves the waiting promise, if there is one. */
  resolve(value: T): void {
    this.#settle?.(undefined, value);
  }

  /** Rejects the waiting promise, if there is one. */
  reject(err: Error): void {
    this.#settle?.(err);
  }

  /** The next `wait` makes a new promise (one still waiting stays so until settled). */
  forget(): void {
    this.#promise = undefined;
  }
}
