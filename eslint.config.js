// Lint rules. Besides the recommended sets, one rule keeps the layers apart: the pure core
// (identification, decision, routes, sandbox kinds) imports neither gRPC nor Kubernetes client code.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'charts/**', 'reports/**', '.stryker-tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: [
      'src/core/**',
      'src/identification/**',
      'src/sandbox-kinds/**',
      'src/routes/registry.ts',
      'src/routes/route.ts',
      'src/wake/state.ts',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@grpc/*', '@kubernetes/*', '**/protocol/*', '**/server/*'],
              message: 'the decision core stays free of wire and Kubernetes code',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['scripts/**', 'test/**'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
