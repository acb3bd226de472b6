// The type a sparkwatch dashboard's JSON must satisfy: Grafana's own published
// definition of a dashboard (the classic model, `Dashboard` of @grafana/schema,
// generated from Grafana's CUE kind), with each panel's `options` and
// `fieldConfig.defaults.custom` typed by its panel plugin's published types.
// tests/test_dashboards.py writes every dashboards/*.json as
// `export const d = <the JSON> satisfies SparkwatchDashboard;` and runs tsc
// --strict once: unknown keys, wrong types and missing required fields fail.
//
// What is read differently from the bare types, and why:
//  - Json<T>: a dashboard's JSON stores an enum's value ("line", 1), which a
//    TypeScript enum type does not accept as a literal; Json<T> replaces every
//    enum by the union of its values. Nothing else changes.
//  - Panels: the schema's Panel leaves `options` and `fieldConfig.defaults.custom`
//    as Record<string, unknown>; here a panel is one of the plugins sparkwatch
//    uses, each with its plugin's Options and FieldConfig. A panel of any other
//    type is an error until its plugin is added below.
//  - targets: Grafana's DataQuery (refId, datasource, hide, queryType) plus the
//    data source's own fields. The Prometheus fields (expr, legendFormat,
//    instant, format) are declared by the Prometheus plugin, which
//    @grafana/schema does not carry: they are not checked here (the PromQL is,
//    by promtool, in tests/test_dashboards.py).
//  - The one exception: a query variable may carry `definition` (the text of its
//    query shown in the variables list). The classic VariableModel does not
//    declare it, yet Grafana writes it when it saves a dashboard
//    (sceneVariablesSetToVariables) and its v2 QueryVariableSpec declares it.
import type * as schema from '@grafana/schema';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

type Json<T> = 0 extends 1 & T
  ? T // any
  : T extends string
    ? `${T}`
    : T extends number
      ? `${T}` extends `${infer N extends number}`
        ? N
        : never
      : T extends boolean | null | undefined
        ? T
        : T extends ReadonlyArray<infer U>
          ? Array<Json<U>>
          : T extends object
            ? { [K in keyof T]: Json<T[K]> }
            : T;

type PanelOf<Type extends string, Options, Custom> = Omit<schema.Panel, 'type' | 'options' | 'fieldConfig' | 'targets'> & {
  type: Type;
  options: Options;
  fieldConfig: Omit<schema.FieldConfigSource, 'defaults'> & {
    defaults: Omit<schema.FieldConfig, 'custom'> & { custom?: Custom };
  };
  targets: Array<schema.DataQuery & Record<string, unknown>>;
};

type Panel =
  | PanelOf<'timeseries', timeseries.Options, timeseries.FieldConfig>
  | PanelOf<'stat', stat.Options, never>
  | PanelOf<'table', table.Options, table.FieldConfig>;

type Row = Omit<schema.RowPanel, 'panels'> & { panels: Panel[] };

type Variable =
  | (Omit<schema.VariableModel, 'type'> & { type: 'query'; definition?: string })
  | (Omit<schema.VariableModel, 'type'> & { type: Exclude<schema.VariableModel['type'], 'query'> });

export type SparkwatchDashboard = Json<
  Omit<schema.Dashboard, 'panels' | 'templating'> & {
    panels: Array<Panel | Row>;
    templating: { list: Variable[] };
  }
>;
