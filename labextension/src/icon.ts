import { LabIcon } from '@jupyterlab/ui-components';

/** A GPU card: a board with two fans and a connector edge. */
const GPU_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M2 6h18a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2h-1v2h-2v-2H7v2H5v-2H4v3H2zm2 2v8h16V8z"/>
    <path d="M9 9.5a2.5 2.5 0 1 1 0 5a2.5 2.5 0 0 1 0-5zm0 1.5a1 1 0 1 0 0 2a1 1 0 0 0 0-2zM15 9.5a2.5 2.5 0 1 1 0 5a2.5 2.5 0 0 1 0-5zm0 1.5a1 1 0 1 0 0 2a1 1 0 0 0 0-2z"/>
  </g>
</svg>`;

export const gpuIcon = new LabIcon({
  name: 'jupyter-neo:gpu',
  svgstr: GPU_SVG
});
