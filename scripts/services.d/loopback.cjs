'use strict';
// Preload (`node -r <this file> ...`) that keeps every TCP server of the
// process on 127.0.0.1: servers such as kinesis-local have no listen-address
// option and would otherwise bind every interface.
// Covers every form of net.Server.prototype.listen (and so http/https/tls):
//   listen(), listen(cb), listen(port[, host][, backlog][, cb]),
//   listen(options[, cb]).
// Unix-socket paths and already-open handles/fds are left as they are.
const net = require('net');

const LOOPBACK = '127.0.0.1';
const original = net.Server.prototype.listen;

function toNumber(x) {
  return (x = Number(x)) >= 0 ? x : false;
}

function isPortLike(v) {
  return typeof v === 'number' ||
    (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v)));
}

net.Server.prototype.listen = function listen(...args) {
  const cb = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
  const first = args[0];
  let options;

  if (first !== null && typeof first === 'object') {
    // listen(handle) / listen({fd}) / listen({path}): not TCP on an address.
    if (first._handle || first.handle || 'fd' in first || first.path != null) {
      return original.apply(this, cb ? [...args, cb] : args);
    }
    options = { ...first, host: LOOPBACK };
    delete options.ipv6Only;
  } else if (typeof first === 'string' && !isPortLike(first)) {
    // listen(path[, backlog][, cb]): IPC, leave alone.
    return original.apply(this, cb ? [...args, cb] : args);
  } else {
    // listen([port[, host[, backlog]]]): same backlog rule as node itself.
    options = { port: first == null ? 0 : first, host: LOOPBACK };
    const backlog = toNumber(args.length > 1 && args[1]) ||
      toNumber(args.length > 2 && args[2]);
    if (backlog !== false) options.backlog = backlog;
  }
  return cb ? original.call(this, options, cb) : original.call(this, options);
};
