/** Types for @fnando/sparkline (the package ships none); its CommonJS build is imported. */
declare module '@fnando/sparkline/dist/sparkline.commonjs2.js' {
  export function sparkline(
    svg: SVGSVGElement,
    entries: number[],
    options?: Record<string, unknown>
  ): void;
}
