// Types for the two files of undici that src/upstream/dispatcher.ts imports directly (undici ships types
// for its index only); they are the index's own.
declare module 'undici/lib/dispatcher/pool.js' {
  import { Pool } from 'undici'
  export default Pool
}
declare module 'undici/lib/core/connect.js' {
  import { buildConnector } from 'undici'
  export default buildConnector
}
