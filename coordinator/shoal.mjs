#!/usr/bin/env node
// The `shoal` command. The coordinator is TypeScript run through tsx, so there is no separate compile step.
import { register } from 'tsx/esm/api'

register()
await import('./cli.ts')
