// Bicep syntax trees offline: tree-sitter-bicep's WASM grammar in web-tree-sitter (no Bicep compiler exists on npm),
// plus the few structural reads the infra consistency tests need.
import { readFileSync } from 'node:fs';

import { Language, Parser } from 'web-tree-sitter';
import type { Node, Tree } from 'web-tree-sitter';

let parser: Promise<Parser> | undefined;

function bicepParser(): Promise<Parser> {
  parser ??= (async () => {
    await Parser.init();
    const language = await Language.load(readFileSync(require.resolve('tree-sitter-bicep/tree-sitter-bicep.wasm')));
    return new Parser().setLanguage(language);
  })();
  return parser;
}

export async function parseBicep(source: string): Promise<Tree> {
  const tree = (await bicepParser()).parse(source);
  if (!tree) throw new Error('tree-sitter returned no tree');
  return tree;
}

export interface SyntaxProblem {
  line: number;
  column: number;
  message: string;
}

/** Every ERROR and missing node, with its 1-based line and the source line it sits on. */
export function syntaxProblems(tree: Tree, source: string): SyntaxProblem[] {
  const lines = source.split('\n');
  const problems: SyntaxProblem[] = [];
  const visit = (node: Node): void => {
    if (node.isError || node.isMissing) {
      const { row, column } = node.startPosition;
      const what = node.isMissing ? `missing ${node.type}` : 'unexpected input';
      problems.push({ line: row + 1, column: column + 1, message: `${what}: ${(lines[row] ?? '').trim()}` });
    }
    if (node.hasError || node.isMissing) for (const child of node.children) if (child) visit(child);
  };
  visit(tree.rootNode);
  return problems;
}

/** Names declared at the top level with `param`, `output`, `var` or `resource`/`module`. */
export function declarations(tree: Tree, type: string): Node[] {
  return tree.rootNode.namedChildren.filter((n): n is Node => n?.type === type);
}

export function declaredName(node: Node): string {
  const id = node.namedChildren.find((c) => c?.type === 'identifier');
  if (!id) throw new Error(`no name in ${node.text.slice(0, 60)}`);
  return id.text;
}

/** The properties of an object node, by key (identifier or quoted key). */
export function objectProperties(object: Node): Map<string, Node> {
  const map = new Map<string, Node>();
  for (const prop of object.namedChildren) {
    if (prop?.type !== 'object_property') continue;
    const [key, value] = prop.namedChildren;
    if (!key || !value) continue;
    map.set(key.text.replace(/^'|'$/g, ''), value);
  }
  return map;
}

/** Every resource declaration in the tree (nested ones too), with its type string and body object. */
export function resources(tree: Tree): { name: string; type: string; body: Node | undefined; node: Node }[] {
  const found: { name: string; type: string; body: Node | undefined; node: Node }[] = [];
  const visit = (node: Node): void => {
    if (node.type === 'resource_declaration') {
      const type = node.namedChildren.find((c) => c?.type === 'string');
      const body = node.namedChildren.find((c) => c?.type === 'object' || c?.type === 'if_statement');
      const object = body?.type === 'if_statement' ? body.namedChildren.find((c) => c?.type === 'object') : body;
      found.push({ name: declaredName(node), type: type?.text.slice(1, -1) ?? '', body: object ?? undefined, node });
    }
    for (const child of node.namedChildren) if (child) visit(child);
  };
  visit(tree.rootNode);
  return found;
}
