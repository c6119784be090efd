// When a response is done, once, for the access log and the metrics.
import type { ServerResponse } from 'node:http'

const kDone = Symbol('berth.responseDone')
type Pending = Array<() => void> | null
type Tracked = ServerResponse & { [kDone]?: Pending }

function finished (this: Tracked): void {
  const fns = this[kDone]
  if (fns === null || fns === undefined) return
  this[kDone] = null
  for (let i = 0; i < fns.length; i++) fns[i]()
}

/**
 * Calls `fn` once, when the response is done: on 'finish' (all of it handed to the OS) or, for one cut
 * short, on 'close'. 'finish' comes before the connection is torn down, so a shutdown that waits for
 * connections never outruns the access log line or the metrics of the last responses.
 *
 * Every caller of one response shares one pair of listeners (plain `on`, no `once` wrappers to make and
 * remove): on a small request the listeners were a measurable part of berth's own CPU.
 */
export function whenResponseDone (res: ServerResponse, fn: () => void): void {
  const r = res as Tracked
  const fns = r[kDone]
  if (fns === null) { fn(); return } // already done
  if (fns !== undefined) { fns.push(fn); return }
  r[kDone] = [fn]
  res.on('finish', finished)
  res.on('close', finished)
}
