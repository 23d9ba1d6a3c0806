// Starts @20minutes/s3rver, which verifies SigV4 signatures (its package has no bin entry).
require('@20minutes/s3rver/lib/cli').parseAsync(process.argv)
