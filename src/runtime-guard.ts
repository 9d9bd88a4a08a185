// Imported first by the command (src/cli.ts), so that it runs before any other module is evaluated: on
// a runtime too old, a dependency could fail while loading in a way that says nothing of the cause.
import { runtimeProblem } from './runtime.ts';

const problem = runtimeProblem(process.versions.node);
if (problem !== undefined) {
  process.stderr.write(`sandbox-extproc: ${problem}\n`);
  process.exit(1);
}
