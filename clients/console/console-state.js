// console-state.js: what the console's modules share. Everything else is kept by the module
// that shows it.
export const ui = {
  client: null,         // the RouterClient of the page (null before the first connect)
  resumes: 0,           // resumes of this client that recovered the session
  lastThreadId: null,   // the thread the editor's templates use
};
