// berth as a library: building and loading, and the public types plugins use (src/types.ts).
export type { BerthConfig, BerthConfigInput } from './config/schema.js'
export type { RegistryAction, BerthUser, Reloadable, Prepared, AuthState, AuthStats } from './types.js'
export type { UpstreamPool, Upstream, UpstreamSnapshot } from './upstream/pool.js'
export { loadConfig, parseConfig } from './config/load.js'
export { buildApp } from './app.js'
export { registryError } from './errors.js'
