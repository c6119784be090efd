// Small requests berth makes itself (a confirming HEAD, a catalog page): the whole answer in memory.
import type { Dispatcher } from 'undici'
import type { Upstream } from './upstream.js'

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** At most this much of an answer is kept (a catalog page of 1,000 long names is far less). */
const LIMIT = 16 << 20

export function fetchWhole (upstream: Upstream, opts: { path: string, method: 'GET' | 'HEAD', headers: string[] }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let status = 0
    let headers: Answer['headers'] = {}
    const chunks: Buffer[] = []
    let size = 0
    upstream.dispatch(opts as Dispatcher.DispatchOptions, {
      onRequestStart () {},
      onResponseStart (_controller, statusCode, responseHeaders) { status = statusCode; headers = responseHeaders },
      onResponseData (controller, chunk: Buffer) {
        size += chunk.length
        if (size > LIMIT) { controller.abort(new Error(`answer over ${LIMIT} bytes`)); return }
        chunks.push(chunk)
      },
      onResponseEnd () { resolve({ status, headers, body: Buffer.concat(chunks) }) },
      onResponseError (_controller, err) { reject(err) }
    })
  })
}
