/**
 * Jest for the sidebar's logic (format, validate, errors, model). The tests
 * need no JupyterLab DOM, so ts-jest alone replaces @jupyterlab/testutils and
 * its ~270 MB of dependencies.
 */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }]
  },
  automock: false,
  collectCoverageFrom: [
    'src/**/*.{ts,tsx}',
    '!src/**/*.d.ts',
    '!src/**/.ipynb_checkpoints/*',
    '!src/__tests__/**'
  ],
  coverageReporters: ['lcov', 'text'],
  testRegex: 'src/.*/.*.spec.ts[x]?$'
};
