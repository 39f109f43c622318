// Promise.withResolvers arrived in Node 22; PostGraphile 5 uses it. Preloaded with
// `node -r ./polyfill.cjs` so v5 runs on the machine's Node 20.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
