// Custom plugins from the config's `plugins` list: loaded in order by dynamic import, each registered
// encapsulated (inside a context of its own, even if it was wrapped with fastify-plugin) with its
// `options`, after auth and access and before the proxy. `berth check` loads them too.
import { pathToFileURL } from 'node:url'
import type { FastifyInstance, FastifyPluginAsync, FastifyPluginCallback } from 'fastify'
import type { BerthConfig } from './config/schema.js'
import { ConfigError } from './errors.js'

type AnyPlugin = FastifyPluginAsync<Record<string, unknown>> | FastifyPluginCallback<Record<string, unknown>>

/** Imports a plugin module; throws with the path and the reason when it is not a Fastify plugin. */
export async function loadPlugin (path: string): Promise<AnyPlugin> {
  let mod: { default?: unknown }
  try {
    mod = await import(pathToFileURL(path).href) as { default?: unknown }
  } catch (err) {
    throw new Error(`cannot load ${path}: ${(err as Error).message.split('\n')[0]}`)
  }
  // A CommonJS module imported from ESM may nest its export once more.
  let plugin = mod.default
  if (typeof plugin === 'object' && plugin !== null && 'default' in plugin) plugin = (plugin as { default: unknown }).default
  if (typeof plugin !== 'function') throw new Error(`${path}: the default export is not a Fastify plugin (a function), it is ${plugin === undefined ? 'missing' : typeof plugin}`)
  return plugin as AnyPlugin
}

/** For `berth check`: every plugin problem, each naming the config key and the path. */
export async function pluginProblems (config: BerthConfig): Promise<string[]> {
  const problems: string[] = []
  for (const [i, p] of config.plugins.entries()) {
    try { await loadPlugin(p.path) } catch (err) { problems.push(`plugins[${i}].path: ${(err as Error).message}`) }
  }
  return problems
}

export async function registerUserPlugins (app: FastifyInstance, config: BerthConfig): Promise<void> {
  for (const [i, p] of config.plugins.entries()) {
    let plugin: AnyPlugin
    try {
      plugin = await loadPlugin(p.path)
    } catch (err) {
      throw new ConfigError(config.file, [`plugins[${i}].path: ${(err as Error).message}`])
    }
    await app.register(async function userPlugin (child) {
      await child.register(plugin, p.options)
    })
  }
}
