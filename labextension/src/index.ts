/**
 * jupyter-neo for JupyterLab: a left sidebar of clusters, reservations and
 * runs, two palette commands and a status-bar item, all over the REST API
 * of the jupyter-neo server extension and its events on the event bus.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { IJupyterWidgetRegistry } from '@jupyter-widgets/base';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

// The sidebar is added to the shell at activation, so these load at once.
/* eslint-disable jupyter/prefer-lazy-imports */
import { NeoClient } from './client';
import { NeoModel } from './model';
import { NeoSidebar } from './sidebar';
import { NeoStatus } from './statusbar';
/* eslint-enable jupyter/prefer-lazy-imports */

export namespace CommandIDs {
  export const reserve = 'jupyter-neo:reserve';
  export const releaseAll = 'jupyter-neo:release-all';
  export const refresh = 'jupyter-neo:refresh';
}

const CATEGORY = 'GPU (jupyter-neo)';

/** None of the commands takes arguments. */
const NO_ARGS = { args: { type: 'object' as const, properties: {} } };

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-neo:plugin',
  description: 'Reserve multi-node GPU gangs and watch runs from JupyterLab.',
  autoStart: true,
  optional: [
    ICommandPalette,
    ILayoutRestorer,
    ILabShell,
    IStatusBar,
    ISettingRegistry
  ],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    labShell: ILabShell | null,
    statusBar: IStatusBar | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    let sidebar: NeoSidebar | null = null;
    const model = new NeoModel({
      client: new NeoClient(app.serviceManager.serverSettings),
      // Stand by while the panel is hidden (the event bus still updates
      // the model), and while the browser tab is hidden.
      standby: () => (sidebar && !sidebar.isVisible ? true : 'when-hidden')
    });
    sidebar = new NeoSidebar(model);
    app.shell.add(sidebar, 'left', { rank: 300 });
    restorer?.add(sidebar, sidebar.id);

    // Push: the server emits change/v1 events; poll only as a fallback.
    app.serviceManager.events.stream.connect((_, emission) =>
      model.handleEmission(emission)
    );
    // Showing the panel refreshes at once rather than at the next tick.
    labShell?.layoutModified.connect(() => {
      if (sidebar?.isVisible && model.poll.state.phase === 'standby') {
        void model.poll.refresh();
      }
    });
    void model.start().catch(() => undefined);

    // Poll periods come from the settings (schema/plugin.json) and follow
    // their changes.
    if (settingRegistry) {
      void settingRegistry
        .load(plugin.id)
        .then(settings => {
          const apply = () =>
            model.configure(settings.composite as NeoModel.ISettings);
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason =>
          console.warn('jupyter-neo: settings not loaded', reason)
        );
    }

    const openSidebar = () => app.shell.activateById(sidebar!.id);

    app.commands.addCommand(CommandIDs.reserve, {
      label: 'Reserve GPUs',
      describedBy: NO_ARGS,
      caption: 'Open the jupyter-neo sidebar at the Reserve form',
      execute: () => {
        openSidebar();
        sidebar!.focusForm();
      }
    });

    app.commands.addCommand(CommandIDs.releaseAll, {
      label: 'Release all reservations',
      describedBy: NO_ARGS,
      caption: 'Release every GPU reservation held through jupyter-neo',
      isEnabled: () => model.reservations.length > 0,
      execute: async () => {
        const live = model.reservations;
        const gpus = model.heldGpus;
        const result = await showDialog({
          title: 'Release all reservations?',
          body: `Release ${live.length} reservation${
            live.length === 1 ? '' : 's'
          } (${gpus} GPUs)? Runs on them are stopped.`,
          buttons: [
            Dialog.cancelButton(),
            Dialog.warnButton({ label: 'Release all' })
          ]
        });
        if (!result.button.accept) {
          return;
        }
        const failed = await model.releaseAll();
        if (failed.length) {
          Notification.error(
            `Could not release ${failed
              .map(f => `${f.id} (${f.error})`)
              .join(', ')}`
          );
        }
      }
    });

    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh GPU reservations',
      describedBy: NO_ARGS,
      execute: () => model.poll.refresh()
    });

    model.changed.connect(() => app.commands.notifyCommandChanged());

    if (palette) {
      for (const command of [
        CommandIDs.reserve,
        CommandIDs.releaseAll,
        CommandIDs.refresh
      ]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }

    if (statusBar) {
      statusBar.registerStatusItem('jupyter-neo:status', {
        item: new NeoStatus(model, openSidebar),
        align: 'left',
        rank: 50,
        isActive: () => model.reservations.length > 0,
        activeStateChanged: model.changed
      });
    }
  }
};

/**
 * The `%neo run` widget's front end (see `widget/runwidget.tsx`): registered
 * with ipywidgets' registry, talking to the REST API with the page's
 * credentials.
 */
const runWidget: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-neo:run-widget',
  description: 'The live block of %neo run in notebooks.',
  autoStart: true,
  requires: [IJupyterWidgetRegistry],
  optional: [ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    registry: IJupyterWidgetRegistry,
    settingRegistry: ISettingRegistry | null
  ) => {
    const settings = app.serviceManager.serverSettings;
    registry.registerWidget({
      name: 'jupyter-neo',
      version: '0.1.0',
      exports: async () => {
        const module = await import('./widget/runwidget');
        module.configure(settings);
        return module as unknown as { [key: string]: any };
      }
    });
    if (settingRegistry) {
      void settingRegistry
        .load(plugin.id)
        .then(s => {
          const apply = () =>
            void import('./widget/runwidget').then(m =>
              m.configure(settings, {
                logInterval:
                  1000 * ((s.composite as NeoModel.ISettings).logInterval ?? 2)
              })
            );
          apply();
          s.changed.connect(apply);
        })
        .catch(() => undefined);
    }
  }
};

export default [plugin, runWidget];
