#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so the package works from a git checkout without a build step.
require('tsx/cjs');
require('../client/main.ts')
  .main()
  .then((code) => {
    process.exitCode = code;
  });
