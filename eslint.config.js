import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", ".venv/", ".mcs-local/", "build/", ".tools/", ".dist-*/"] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: { globals: globals.node },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      // With noUncheckedIndexedAccess, `match[1]!` after a successful match is the honest spelling.
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
);
