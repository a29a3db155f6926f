// A command's module, loaded on the first call of the function it exports: `dosvob --help` reads none of Temporal's
// client, the worker, ssh2 or the DigitalOcean client. The loaders use require(), not import(): bin/dosvob.js runs
// the sources through tsx's require hook, under which an extensionless import() does not resolve.

type Fn = (...args: never[]) => unknown;

/** The function `name` of the module `load()` returns, loaded when first called (sync or async alike). */
export function lazy<M extends { [P in K]: Fn }, K extends keyof M>(load: () => M, name: K): M[K] {
  const call = (...args: Parameters<M[K]>): unknown => load()[name](...args);
  return call as unknown as M[K];
}
