// Imported first by every script (ES modules evaluate imports in order), so
// that @atproto/common's pino logger is disabled before it is created: the
// scripts' stdout must carry exactly one JSON line.
process.env.LOG_ENABLED = 'false'
