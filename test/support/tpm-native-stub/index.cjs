// Stand-in for tss.js's native dependencies (ffi-napi, ref-napi, ref-struct-di, ref-array-di). tss.js loads them only
// inside TpmTbsDevice (Windows TBS); the tests use its TCP simulator device, which needs none of them.
'use strict';
throw new Error('tss.js native TPM access (Windows TBS) is not available here: use the TCP simulator device.');
