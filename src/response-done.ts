// When a response is done, once, for the access log and the metrics.
import type { ServerResponse } from 'node:http'

/**
 * Calls `fn` once, when the response is done: on 'finish' (all of it handed to the OS) or, for one cut
 * short, on 'close'. 'finish' comes before the connection is torn down, so a shutdown that waits for
 * connections never outruns the access log line or the metrics of the last responses.
 */
export function whenResponseDone (res: ServerResponse, fn: () => void): void {
  let done = false
  const once = () => {
    if (done) return
    done = true
    fn()
  }
  res.once('finish', once)
  res.once('close', once)
}
