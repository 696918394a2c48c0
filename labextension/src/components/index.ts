/** The sidebar's React components, one per file; each has a spec in __tests__. */
export * from './ClustersTable';
export * from './DatasetsView';
export * from './hooks';
export * from './LogTail';
export * from './PodDots';
export * from './PricePreview';
export * from './ReservationData';
export * from './ReservationRow';
export * from './Reservations';
export * from './ReserveForm';
export * from './RowHead';
export * from './RunDetail';
export * from './Runs';
export * from './Section';
export * from './StatusBanner';
export * from './Table';
export * from './UtilBars';
