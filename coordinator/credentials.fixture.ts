import { Credentials } from './auth.ts'

/** The tokens tests connect with: one per role, and driver tokens of three tenants (a, b, and the fuzzers'). */
export const TEST_TOKENS = {
  ADMIN: 'admin-token-0123456789abcdef',
  NODE: 'node-token-0123456789abcdef',
  TOKEN_A: 'tenant-a-token-0123456789abcdef',
  TOKEN_B: 'tenant-b-token-0123456789abcdef',
  TOKEN_F: 'tenant-f-token-0123456789abcdef',
} as const

/** A coordinator's credentials for TEST_TOKENS. */
export const testCredentials = () =>
  Credentials.from({
    tokens: [
      { token: TEST_TOKENS.ADMIN, role: 'admin' },
      { token: TEST_TOKENS.NODE, role: 'node' },
      { token: TEST_TOKENS.TOKEN_A, role: 'driver', tenant: 'a' },
      { token: TEST_TOKENS.TOKEN_B, role: 'driver', tenant: 'b' },
      { token: TEST_TOKENS.TOKEN_F, role: 'driver', tenant: 'fuzz' },
    ],
  })
